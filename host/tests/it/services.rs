//! Smoke tests proving the services `cargo xtask test` starts are real: an
//! Apache Kafka broker and a MiniDFSCluster, reached with the clients the
//! daemon uses (rdkafka, hdfs-native).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::{hdfs_url, kafka_bootstrap, unique};

const RECORDS: usize = 10_000;

fn payload(i: usize) -> String {
    format!(
        r#"{{"event_type":"purchase_sword","n":{i},"pad":"{}"}}"#,
        "x".repeat(i % 97)
    )
}

#[test]
fn kafka_round_trips_ten_thousand_records() {
    let bootstrap = kafka_bootstrap();
    let topic = unique("smoke");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let created = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .unwrap();
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let value = payload(i);
        let key = format!("user{}", i % 7);
        producer
            .send(BaseRecord::to(&topic).key(&key).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", unique("smoke-group"))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got < RECORDS {
        assert!(
            std::time::Instant::now() < deadline,
            "only {got} records came back"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.unwrap();
        assert_eq!(msg.offset(), got as i64, "offsets are dense from 0");
        assert_eq!(
            msg.payload(),
            Some(payload(got).as_bytes()),
            "payload of record {got}"
        );
        assert_eq!(msg.key(), Some(format!("user{}", got % 7).as_bytes()));
        got += 1;
    }
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, RECORDS as i64));
}

#[test]
fn hdfs_writes_lists_reads_and_deletes_64_mib() {
    let url = hdfs_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = hdfs_native::ClientBuilder::new()
            .with_url(&url)
            .build()
            .unwrap();
        let dir = format!("/{}", unique("smoke"));
        let path = format!("{dir}/blob.bin");
        client.mkdirs(&dir, 0o755, true).await.unwrap();
        let data: Vec<u8> = (0..64usize << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();

        let mut writer = client
            .create(&path, hdfs_native::WriteOptions::default())
            .await
            .unwrap();
        for chunk in data.chunks(4 << 20) {
            writer
                .write(bytes::Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        writer.close().await.unwrap();

        let listing = client.list_status(&dir, false).await.unwrap();
        assert_eq!(listing.len(), 1);
        assert!(
            listing[0].path.ends_with("blob.bin"),
            "{:?}",
            listing[0].path
        );
        assert_eq!(listing[0].length, data.len());

        let reader = client.read(&path).await.unwrap();
        let back = reader.read_range(0, reader.file_length()).await.unwrap();
        assert_eq!(back.len(), data.len());
        assert!(
            back == data[..],
            "the bytes read back differ from those written"
        );

        assert!(client.delete(&dir, true).await.unwrap());
        assert!(
            client.get_file_info(&path).await.is_err(),
            "the file is gone"
        );
    });
}
