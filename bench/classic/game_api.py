#!/usr/bin/env python
"""The seed's Flask app (game_api.py), as its document describes it: four
POST routes, each building a dict of the path's values plus the request's
headers and sending it as JSON to the Kafka topic `events` (kafka-python,
fire and forget, as the seed does: the reply does not wait for the broker).

Run it the way the side-by-side benchmark does, in the seed's best
configuration found here (2 workers x 8 threads):

    KAFKA=127.0.0.1:9092 TOPIC=events gunicorn -w 2 --threads 8 -b 127.0.0.1:5096 game_api:app
"""
import json
import os

from flask import Flask, request
from kafka import KafkaProducer

app = Flask(__name__)
producer = KafkaProducer(bootstrap_servers=os.environ.get("KAFKA", "localhost:9092"))
TOPIC = os.environ.get("TOPIC", "events")


def log_to_kafka(topic, event):
    event.update(request.headers)
    producer.send(topic, json.dumps(event).encode())


@app.route("/", methods=["GET", "POST"])
def default_response():
    default_event = {"event_type": "default"}
    log_to_kafka(TOPIC, default_event)
    return "This is the default response!\n"


@app.route("/purchase_a_sword/<color>/<quantity>", methods=["POST"])
def purchase_a_sword(color, quantity):
    purchase_sword_event = {"event_type": "purchase_sword", "color": color, "quantity": quantity}
    if float(purchase_sword_event["quantity"]) < 0:
        raise Exception("Please enter a non-negative value for quantity")
    purchase_sword_event["color"] = purchase_sword_event["color"].lower()
    log_to_kafka(TOPIC, purchase_sword_event)
    return "Sword Purchased!\n"


@app.route("/purchase_a_horse/<speed>/<size>/<quantity>", methods=["POST"])
def purchase_a_horse(speed, size, quantity):
    purchase_horse_event = {"event_type": "purchase_horse", "speed": speed, "size": size, "quantity": quantity}
    if purchase_horse_event["size"].lower() not in ["small", "medium", "large"]:
        raise Exception("Please enter either 'small', 'medium' or 'large' for horse size")
    elif float(purchase_horse_event["speed"]) < 0:
        raise Exception("Please enter a non-negative value for speed")
    elif float(purchase_horse_event["quantity"]) < 0:
        raise Exception("Please enter a non-negative value for quantity")
    else:
        purchase_horse_event["size"] = purchase_horse_event["size"].lower()
        log_to_kafka(TOPIC, purchase_horse_event)
        return "Horse Purchased!\n"


@app.route("/guild/<action>", methods=["POST"])
def guild(action):
    guild_event = {"event_type": "guild", "action": action}
    if guild_event["action"].lower() not in ["join", "leave"]:
        raise Exception("Please enter either 'join' or 'leave' for the guild action")
    guild_event["action"] = guild_event["action"].lower()
    log_to_kafka(TOPIC, guild_event)
    return "Guild action recorded!\n"
