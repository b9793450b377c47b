// The contract's import, as componentize-js provides it inside a component.
declare module 'eventsift:plugin/log@0.2.0' {
  export function write(
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error',
    message: string,
    event: number | undefined,
  ): void;
}
