// Log lines for the plugin's developer (contract 0.2): shown by `eventsift
// plugin test` and in the daemon's log, where the host tags them with the
// plugin, its version and, inside `process`, the source position of the
// event being mapped. The host rate-limits them; logging never fails.
// Natively (unit tests) lines go to stderr. The port of `sdk/src/log.rs`.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Where lines go: the contract's `log.write` in a component, stderr natively. */
export type Sink = (level: Level, message: string, event: number | undefined) => void;

let sink: Sink = (level, message, event) => {
  const tag = `[${level[0].toUpperCase()}${level.slice(1)}]`;
  console.error(event === undefined ? `${tag} ${message}` : `${tag} event ${event}: ${message}`);
};
let current: number | undefined;

/** Sets where lines go (the component adapter calls it). */
export function setSink(s: Sink): void {
  sink = s;
}

/** Sets the event the following lines concern (the driver calls it). */
export function setCurrent(index: number | undefined): void {
  current = index;
}

/** Writes one line; inside `process`, it names the event being mapped. */
export function write(level: Level, message: string): void {
  sink(level, message, current);
}

export const trace = (message: string): void => write('trace', message);
export const debug = (message: string): void => write('debug', message);
export const info = (message: string): void => write('info', message);
export const warn = (message: string): void => write('warn', message);
export const error = (message: string): void => write('error', message);
