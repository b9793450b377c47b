// Table columns and the row builder: rows written by `map` land directly in
// one typed buffer per column, the shape the contract returns to the host
// (text as one UTF-8 buffer with end offsets; nulls as a validity bitmap).
// The port of the Rust SDK's `sdk/src/columns.rs` and `info.rs`.

/** Arrow/Parquet type of a column. */
export type ColumnType = 'string' | 'int64' | 'float64' | 'bool' | 'timestamp';

/** One column of the plugin's table. */
export class Column {
  constructor(
    readonly name: string,
    readonly kind: ColumnType,
    readonly description: string,
    readonly isNullable = false,
  ) {}
  static string(name: string, description: string): Column {
    return new Column(name, 'string', description);
  }
  static int64(name: string, description: string): Column {
    return new Column(name, 'int64', description);
  }
  static float64(name: string, description: string): Column {
    return new Column(name, 'float64', description);
  }
  static bool(name: string, description: string): Column {
    return new Column(name, 'bool', description);
  }
  /** Microseconds since the Unix epoch, UTC. */
  static timestamp(name: string, description: string): Column {
    return new Column(name, 'timestamp', description);
  }
  /** The same column, allowing nulls (`row.null()`). */
  nullable(): Column {
    return new Column(this.name, this.kind, this.description, true);
  }
}

/** A bug in the plugin (not in the event): it traps, like a Rust plugin's panic. */
export class PluginBug extends Error {}

const encoder = new TextEncoder();

/** One column's values for a batch, growing as rows are written. */
export class ColumnBuffer {
  /** Text: UTF-8 bytes; numbers: values. */
  bytes = new Uint8Array(256);
  byteLen = 0;
  ends: number[] = [];
  ints: bigint[] = [];
  floats: number[] = [];
  bools: boolean[] = [];
  /** One flag per row (`false` = null); empty while no row is null. */
  valid: boolean[] = [];
  length = 0;

  constructor(readonly spec: Column) {}

  pushText(s: string): void {
    const need = this.byteLen + s.length * 3;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.byteLen));
      this.bytes = grown;
    }
    this.byteLen += encoder.encodeInto(s, this.bytes.subarray(this.byteLen)).written;
    this.ends.push(this.byteLen);
  }

  pushValid(valid: boolean, rowsBefore: number): void {
    if (!valid && this.valid.length === 0) {
      for (let i = 0; i < rowsBefore; i++) this.valid.push(true);
    }
    if (this.valid.length > 0) this.valid.push(valid);
  }

  truncate(rows: number): void {
    this.length = rows;
    switch (this.spec.kind) {
      case 'string':
        this.ends.length = rows;
        this.byteLen = rows > 0 ? this.ends[rows - 1] : 0;
        break;
      case 'int64':
      case 'timestamp':
        this.ints.length = rows;
        break;
      case 'float64':
        this.floats.length = rows;
        break;
      case 'bool':
        this.bools.length = rows;
        break;
    }
    if (this.valid.length > rows) this.valid.length = rows;
  }

  isNull(i: number): boolean {
    return this.valid.length > 0 && !this.valid[i];
  }

  /** Text of row `i` (text columns). */
  text(i: number): string {
    const start = i === 0 ? 0 : this.ends[i - 1];
    return new TextDecoder().decode(this.bytes.subarray(start, this.ends[i]));
  }
}

/** The columns of a batch being built. */
export class Columns {
  readonly data: ColumnBuffer[];
  rows = 0;
  readonly row: Row;

  constructor(readonly spec: readonly Column[]) {
    this.data = spec.map((c) => new ColumnBuffer(c));
    this.row = new Row(this);
  }

  /** Starts the next row. */
  begin(): Row {
    this.row.next = 0;
    return this.row;
  }

  /** Keeps the row just written, checking that it is complete. */
  commit(): void {
    const written = this.row.next;
    if (written !== this.spec.length) {
      throw new PluginBug(`plugin bug: map wrote ${written} values but the table has ${this.spec.length} columns`);
    }
    this.rows++;
  }

  /** Drops whatever the current (rejected) row wrote. */
  rollback(): void {
    for (const c of this.data) if (c.length > this.rows) c.truncate(this.rows);
  }
}

/** The row being written: one value per column, in column order. */
export class Row {
  next = 0;

  constructor(private readonly columns: Columns) {}

  private slot(kind: ColumnType): ColumnBuffer {
    const i = this.next;
    const spec = this.columns.spec[i];
    if (spec === undefined) throw new PluginBug('plugin bug: map wrote more values than the table has columns');
    if (spec.kind !== kind) {
      throw new PluginBug(`plugin bug: column ${spec.name} is ${spec.kind} but map wrote a ${kind} value`);
    }
    this.next++;
    const c = this.columns.data[i];
    c.pushValid(true, this.columns.rows);
    c.length++;
    return c;
  }

  /** Writes a string value. */
  str(value: string): this {
    this.slot('string').pushText(value);
    return this;
  }

  /** Writes an int64 value (a bigint, or a whole number within ±2^53). */
  i64(value: bigint | number): this {
    this.slot('int64').ints.push(whole(value, 'int64'));
    return this;
  }

  /** Writes a float64 value. */
  f64(value: number): this {
    this.slot('float64').floats.push(value);
    return this;
  }

  /** Writes a bool value. */
  bool(value: boolean): this {
    this.slot('bool').bools.push(value);
    return this;
  }

  /** Writes a timestamp (microseconds since the Unix epoch, UTC). */
  timestampMicros(value: bigint | number): this {
    this.slot('timestamp').ints.push(whole(value, 'timestamp'));
    return this;
  }

  /** Writes a null into a nullable column. */
  null(): this {
    const i = this.next;
    const spec = this.columns.spec[i];
    if (spec === undefined) throw new PluginBug('plugin bug: map wrote more values than the table has columns');
    if (!spec.isNullable) throw new PluginBug(`plugin bug: null written to non-nullable column ${spec.name}`);
    this.next++;
    const c = this.columns.data[i];
    c.pushValid(false, this.columns.rows);
    c.length++;
    switch (spec.kind) {
      case 'string':
        c.ends.push(c.byteLen);
        break;
      case 'int64':
      case 'timestamp':
        c.ints.push(0n);
        break;
      case 'float64':
        c.floats.push(0);
        break;
      case 'bool':
        c.bools.push(false);
        break;
    }
    return this;
  }
}

const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

function whole(value: bigint | number, kind: string): bigint {
  if (typeof value === 'bigint') {
    if (value < I64_MIN || value > I64_MAX) throw new PluginBug(`plugin bug: ${value} does not fit a ${kind} column`);
    return value;
  }
  if (!Number.isSafeInteger(value)) throw new PluginBug(`plugin bug: ${value} is not a whole number a ${kind} column can hold exactly`);
  return BigInt(value);
}
