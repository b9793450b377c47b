// The WebAssembly side: adapts a `Plugin` to the shape componentize-js
// expects for the contract's `plugin` interface (eventsift:plugin@0.2.0).
// A project's `src/component.ts` is the one module that imports the
// contract (`eventsift:plugin/log@0.2.0`) and exports `plugin`.
//
// Failures the plugin means are `Reject`s: `validate` throws the reason
// string, which componentize-js returns as the result's `err`. Anything
// else thrown (a `PluginBug`, a TypeError) propagates and traps: the host
// reports it as a fault, like a Rust plugin's panic.

import { ColumnBuffer } from './columns';
import { BatchOutput, Plugin, processBatch, validate } from './driver';
import { Reject } from './event';
import { Sink, setSink } from './log';

function column(c: ColumnBuffer): unknown {
  let values: unknown;
  switch (c.spec.kind) {
    case 'string':
      values = { tag: 'text', val: { data: c.bytes.slice(0, c.byteLen), ends: Uint32Array.from(c.ends) } };
      break;
    case 'int64':
      values = { tag: 'int64', val: BigInt64Array.from(c.ints) };
      break;
    case 'timestamp':
      values = { tag: 'timestamp', val: BigInt64Array.from(c.ints) };
      break;
    case 'float64':
      values = { tag: 'float64', val: Float64Array.from(c.floats) };
      break;
    case 'bool':
      values = { tag: 'boolean', val: c.bools };
      break;
  }
  return { values, validity: bitmap(c.valid) };
}

/** Packs validity flags into an LSB-first bitmap; empty stays empty. */
function bitmap(valid: boolean[]): Uint8Array {
  const bits = new Uint8Array(Math.ceil(valid.length / 8));
  for (let i = 0; i < valid.length; i++) if (valid[i]) bits[i >> 3] |= 1 << (i & 7);
  return bits;
}

function routeParts(route: string | undefined): { method: string; path: string } | undefined {
  if (route === undefined) return undefined;
  const space = route.indexOf(' ');
  if (space < 0) return { method: 'POST', path: route };
  return { method: route.slice(0, space), path: route.slice(space + 1).trimStart() };
}

/** The contract's `plugin` interface for `plugin`; `write` is the contract's `log.write`. */
export function exportPlugin(plugin: Plugin, write: Sink) {
  setSink(write);
  return {
    describe() {
      return {
        name: plugin.name,
        version: plugin.version,
        eventType: plugin.eventType,
        table: plugin.table,
        columns: plugin.columns.map((c) => ({
          name: c.name,
          kind: c.kind,
          nullable: c.isNullable,
          description: c.description,
        })),
        route: routeParts(plugin.route),
      };
    },
    validate(fields: string) {
      try {
        return validate(plugin, fields);
      } catch (e) {
        if (e instanceof Reject) throw e.reason;
        throw e;
      }
    },
    process(batch: { data: Uint8Array; ends: Uint32Array }) {
      const out: BatchOutput = processBatch(plugin, batch.data, batch.ends);
      return {
        rows: Uint32Array.from(out.rows),
        columns: out.columns.map(column),
        rejected: out.rejected,
      };
    },
  };
}
