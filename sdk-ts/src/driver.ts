// The two calls of the contract in plain TypeScript, shared by the component
// adapter and by native tests: `validate` one event for the API and
// `processBatch` a batch of raw events for the writer. The port of the Rust
// SDK's `sdk/src/driver.rs`.

import { Column, ColumnBuffer, Columns, Row } from './columns';
import { Event, Reject } from './event';
import { jsonFloat, jsonString } from './format';
import { setCurrent } from './log';

/** An event-type plugin: what it owns and its one mapping function. */
export interface Plugin {
  /** Plugin name, e.g. `achievement`. */
  name: string;
  /** Plugin version (semver). */
  version: string;
  /** The `event_type` the plugin owns. */
  eventType: string;
  /** The table its rows go to. */
  table: string;
  /** HTTP route as `METHOD /path/{field}/...`, if the API should serve one. */
  route?: string;
  /** The plugin's own columns; the host adds the common ones. */
  columns: readonly Column[];
  /**
   * Validates one event and writes its row, one value per column in order.
   * Returns the reply text for the API caller; throws a `Reject` (the
   * getters do) naming the field and the rule it broke. Writing a value of
   * the wrong type, too few or too many values is a bug in the plugin: it
   * traps.
   */
  map(event: Event, row: Row): string;
}

/** Declares a plugin (type-checks it; returns it unchanged). */
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}

/** One rejected event of a batch. */
export interface Rejection {
  index: number;
  reason: string;
}

/** What a plugin made of a batch; events in neither `rows` nor `rejected` belong to another event type. */
export interface BatchOutput {
  rows: number[];
  columns: ColumnBuffer[];
  rejected: Rejection[];
}

const encoder = new TextEncoder();

/** Maps a batch of raw JSON events (`data[ends[i-1]..ends[i]]`) to rows; skips events of other types. */
export function processBatch(plugin: Plugin, data: Uint8Array, ends: ArrayLike<number>): BatchOutput {
  const columns = new Columns(plugin.columns);
  const rows: number[] = [];
  const rejected: Rejection[] = [];
  const event = new Event();
  const eventType = plugin.eventType;
  let start = 0;
  for (let index = 0; index < ends.length; index++) {
    const end = Math.min(Math.max(ends[index], start), data.length);
    const raw = data.subarray(start, end);
    start = end;
    try {
      event.parseInto(raw);
    } catch (e) {
      if (e instanceof Reject) {
        rejected.push({ index, reason: e.reason });
        continue;
      }
      throw e;
    }
    const t = event.get('event_type');
    if (t === undefined || t.kind !== 'str' || t.value !== eventType) continue;
    const row = columns.begin();
    setCurrent(index);
    try {
      plugin.map(event, row);
      columns.commit();
      rows.push(index);
    } catch (e) {
      if (!(e instanceof Reject)) throw e;
      columns.rollback();
      rejected.push({ index, reason: e.reason });
    } finally {
      setCurrent(undefined);
    }
  }
  return { rows, columns: columns.data, rejected };
}

/** A batch of events given as JSON texts (native tests). */
export function batchOf(events: readonly string[]): { data: Uint8Array; ends: Uint32Array } {
  const parts = events.map((e) => encoder.encode(e));
  const ends = new Uint32Array(parts.length);
  let total = 0;
  parts.forEach((p, i) => {
    total += p.length;
    ends[i] = total;
  });
  const data = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { data, ends };
}

/**
 * Validates one event for the API: `fields` is a JSON object (path
 * parameters as strings, or a request body). Returns the normalized fields
 * as a JSON object text and the reply; throws the Reject.
 */
export function validate(plugin: Plugin, fields: string): { fields: string; reply: string } {
  const event = Event.parse(fields);
  const columns = new Columns(plugin.columns);
  const reply = plugin.map(event, columns.begin());
  columns.commit();
  let json = '{';
  plugin.columns.forEach((spec, i) => {
    if (i > 0) json += ',';
    json += `${jsonString(spec.name)}:`;
    const col = columns.data[i];
    if (col.isNull(0)) {
      json += 'null';
      return;
    }
    switch (spec.kind) {
      case 'string':
        json += jsonString(col.text(0));
        break;
      case 'int64':
      case 'timestamp':
        json += col.ints[0].toString();
        break;
      case 'float64':
        json += jsonFloat(col.floats[0]);
        break;
      case 'bool':
        json += col.bools[0] ? 'true' : 'false';
        break;
    }
  });
  return { fields: `${json}}`, reply };
}
