// The eventsift plugin SDK for TypeScript.
//
// A plugin owns one event type. It declares its table and route and writes
// one function, `map`, that reads the event's fields through typed getters
// and writes one table row:
//
//   import { Column, definePlugin } from '@eventsift/sdk';
//
//   export default definePlugin({
//     name: 'horse', version: '0.1.0',
//     eventType: 'purchase_horse', table: 'horse_purchases',
//     route: 'POST /purchase_a_horse/{speed}/{size}/{quantity}',
//     columns: [
//       Column.float64('speed', 'speed of the horse, >= 0'),
//       Column.string('size', 'small, medium or large'),
//       Column.int64('quantity', 'number of horses bought'),
//     ],
//     map(event, row) {
//       row.f64(event.nonNegative('speed'));
//       row.str(event.choice('size', ['small', 'medium', 'large']));
//       row.i64(event.count('quantity'));
//       return 'Horse Purchased!\n';
//     },
//   });
//
// The getters and their messages are the Rust SDK's (`sdk/`), so a plugin
// ported from Rust gives the same rows and the same rejections. Whole
// numbers are bigints (int64 columns hold 64 bits).

export { Column, PluginBug, Row } from './columns';
export type { ColumnType } from './columns';
export { Event, Reject, display } from './event';
export type { Value } from './event';
export { definePlugin, processBatch, validate, batchOf } from './driver';
export type { Plugin, BatchOutput, Rejection } from './driver';
export { exportPlugin } from './component';
export * as log from './log';
export * as testing from './testing';
