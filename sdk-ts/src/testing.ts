// Helpers for a plugin's native unit tests (`npm test`).

import { Plugin, batchOf, processBatch, validate as validateOne } from './driver';
import { Reject } from './event';

/** Validates one event as the API would: the normalized fields and the reply, or the Reject's reason. */
export function validate(plugin: Plugin, fields: string): { fields: string; reply: string } | { rejected: string } {
  try {
    return validateOne(plugin, fields);
  } catch (e) {
    if (e instanceof Reject) return { rejected: e.reason };
    throw e;
  }
}

/** Maps whole events (JSON texts, each with its `event_type`) as the writer would: rows as plain values, rejections by index. */
export function process(plugin: Plugin, events: readonly string[]) {
  const { data, ends } = batchOf(events);
  const out = processBatch(plugin, data, ends);
  const rows = out.rows.map((_, r) =>
    Object.fromEntries(
      out.columns.map((c) => {
        if (c.isNull(r)) return [c.spec.name, null];
        switch (c.spec.kind) {
          case 'string':
            return [c.spec.name, c.text(r)];
          case 'int64':
          case 'timestamp':
            return [c.spec.name, c.ints[r]];
          case 'float64':
            return [c.spec.name, c.floats[r]];
          case 'bool':
            return [c.spec.name, c.bools[r]];
        }
      }),
    ),
  );
  return { rows, indices: out.rows, rejected: out.rejected };
}
