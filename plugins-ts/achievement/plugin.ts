// Achievements unlocked: `POST /unlock_achievement/{badge}/{level}`, the
// bundled plugin written in TypeScript (not in the default bundle: built by
// `cargo xtask plugins --ts`, see plugins-ts/package.json).

import { Column, definePlugin, log } from '@eventsift/sdk';

export default definePlugin({
  name: 'achievement',
  version: '0.1.0',
  eventType: 'unlock_achievement',
  table: 'achievements',
  route: 'POST /unlock_achievement/{badge}/{level}',
  columns: [
    Column.string('badge', "the badge unlocked: letters, digits, '-' or '_'"),
    Column.int64('level', 'the level it was unlocked at, >= 0'),
  ],
  map(event, row) {
    const badge = event.token('badge', 64);
    const level = event.count('level');
    if (level > 1000n) log.warn(`level ${level} is unusually high`);
    row.str(badge);
    row.i64(level);
    return 'Achievement Unlocked!\n';
  },
});
