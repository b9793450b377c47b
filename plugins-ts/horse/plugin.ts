// Horse purchases: `POST /purchase_a_horse/{speed}/{size}/{quantity}`.
// A line-for-line port of `plugins/horse/src/lib.rs`; the suite checks that
// both give the same rows and rejections on the same 10,000 mixed events.

import { Column, definePlugin } from '@eventsift/sdk';

export default definePlugin({
  name: 'horse',
  version: '0.1.0',
  eventType: 'purchase_horse',
  table: 'horse_purchases',
  route: 'POST /purchase_a_horse/{speed}/{size}/{quantity}',
  columns: [
    Column.float64('speed', 'speed of the horse, >= 0'),
    Column.string('size', 'small, medium or large'),
    Column.int64('quantity', 'number of horses bought'),
  ],
  map(event, row) {
    row.f64(event.nonNegative('speed'));
    row.str(event.choice('size', ['small', 'medium', 'large']));
    row.i64(event.count('quantity'));
    return 'Horse Purchased!\n';
  },
});
