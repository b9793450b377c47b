// Native unit tests of the TypeScript plugins (`npm test`).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@eventsift/sdk';
import achievement from '../achievement/plugin';
import horse from '../horse/plugin';

test('achievement validates route fields', () => {
  assert.deepEqual(testing.validate(achievement, '{"badge":"first-blood","level":"3"}'), {
    fields: '{"badge":"first-blood","level":3}',
    reply: 'Achievement Unlocked!\n',
  });
  assert.deepEqual(testing.validate(achievement, '{"badge":"gold!","level":"3"}'), {
    rejected: `badge must be 1 to 64 letters, digits, '-' or '_', got "gold!"`,
  });
  assert.deepEqual(testing.validate(achievement, '{"badge":"gold","level":"-3"}'), {
    rejected: 'level must be a whole number >= 0, got "-3"',
  });
});

test('horse processes batches like its Rust original', () => {
  const out = testing.process(horse, [
    '{"event_type":"purchase_horse","speed":1.0,"size":"large","quantity":2}',
    '{"event_type":"purchase_sword","color":"red","quantity":2}',
    '{"event_type":"purchase_horse","speed":1.0,"size":"huge","quantity":2}',
    'not json',
    '{"event_type":"purchase_horse","speed":3,"size":"small","quantity":1}',
  ]);
  assert.deepEqual(out.indices, [0, 4]);
  assert.equal(out.rows[1].size, 'small');
  assert.deepEqual(out.rejected, [
    { index: 2, reason: 'size must be one of small, medium, large, got "huge"' },
    { index: 3, reason: 'malformed event: expected a JSON object at byte 0' },
  ]);
  assert.deepEqual(testing.validate(horse, '{"speed":"1","size":"SMALL","quantity":"1"}'), {
    fields: '{"speed":1.0,"size":"small","quantity":1}',
    reply: 'Horse Purchased!\n',
  });
});
