// The SDK's unit tests: the Rust SDK's cases (sdk/src/event.rs, scan.rs)
// with the same expected texts, plus the number and string forms the Rust
// SDK prints. The parity test (host/tests/it/kit.rs) compares the two SDKs
// inside components on 10,000 mixed events.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Event, Reject, display } from '../src/index';
import { jsonFloat, jsonString, rustDebug } from '../src/format';

function check(json: string, get: (e: Event) => unknown, expect: string): void {
  let got: string;
  try {
    got = `ok ${String(get(Event.parse(json)))}`;
  } catch (e) {
    if (!(e instanceof Reject)) throw e;
    got = `err ${e.reason}`;
  }
  assert.equal(got, expect, `input: ${json}`);
}

test('getters', () => {
  const count = (e: Event) => e.count('quantity');
  check('{"quantity":"2"}', count, 'ok 2');
  check('{"quantity":2}', count, 'ok 2');
  check('{"quantity":2.0}', count, 'ok 2');
  check('{"quantity":"two"}', count, 'err quantity must be a whole number >= 0, got "two"');
  check('{"quantity":-1}', count, 'err quantity must be a whole number >= 0, got -1');
  check('{"quantity":"1.5"}', count, 'err quantity must be a whole number >= 0, got "1.5"');
  check('{"quantity":1e300}', count, 'err quantity must be a whole number >= 0, got 1e300');
  check('{"quantity":18446744073709551615}', count, 'err quantity must be a whole number >= 0, got 18446744073709551615');
  check('{"quantity":[1]}', count, 'err quantity must be a whole number >= 0, got an array');
  check('{}', count, 'err missing field "quantity"');
  check('{"quantity":null}', count, 'err missing field "quantity"');
  const speed = (e: Event) => e.nonNegative('speed');
  check('{"speed":"1.5"}', speed, 'ok 1.5');
  check('{"speed":"NaN"}', speed, 'err speed must be a finite number >= 0, got "NaN"');
  check('{"speed":"inf"}', speed, 'err speed must be a finite number >= 0, got "inf"');
  check('{"speed":"-0"}', speed, 'ok 0');
  check('{"speed":"1e999"}', speed, 'err speed must be a finite number >= 0, got "1e999"');
  const size = (e: Event) => e.choice('size', ['small', 'large']);
  check('{"size":"LaRge"}', size, 'ok large');
  check('{"size":"huge"}', size, 'err size must be one of small, large, got "huge"');
  const color = (e: Event) => e.token('color', 4);
  check('{"color":"re-d"}', color, 'ok re-d');
  check('{"color":"red!"}', color, `err color must be 1 to 4 letters, digits, '-' or '_', got "red!"`);
  check('{"color":""}', color, `err color must be 1 to 4 letters, digits, '-' or '_', got ""`);
  check('{"color":"a\\"b"}', color, `err color must be 1 to 4 letters, digits, '-' or '_', got "a\\"b"`);
  check('{"color":"été"}', color, 'ok été');
  check('{"color":"ééééé"}', color, `err color must be 1 to 4 letters, digits, '-' or '_', got "ééééé"`);
  const flag = (e: Event) => e.bool('flag');
  check('{"flag":"TRUE"}', flag, 'ok true');
  check('{"flag":0}', flag, 'err flag must be true or false, got 0');
  const int = (e: Event) => e.int('n');
  check('{"n":"-9223372036854775808"}', int, 'ok -9223372036854775808');
  check('{"n":"+7"}', int, 'ok 7');
  check('{"n":"9223372036854775808"}', int, 'err n must be a whole number, got "9223372036854775808"');
  check('{"n":9223372036854775808}', int, 'err n must be a whole number, got 9223372036854775808');
});

test('malformed', () => {
  const any = () => '';
  check('[1]', any, 'err malformed event: expected a JSON object at byte 0');
  check('{', any, 'err malformed event: expected a string key, found the end of the input');
  check('{"a":1} x', any, 'err malformed event: trailing characters at byte 8');
  check('{"a":1 "b":2}', any, "err malformed event: expected ',' or '}' at byte 7");
  check('{"a":', any, 'err malformed event: expected a value, found the end of the input');
  const deep = `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`;
  check(deep, (e) => display(e.get('a')!), 'ok an array');
  const bad = Event.parse(Uint8Array.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]));
  assert.throws(() => bad.str('a'), (e: Reject) => e.reason === 'a must be a string, got text that is not UTF-8');
});

test('escaped strings decode and fail as serde_json does', () => {
  const s = (e: Event) => e.str('s');
  check('{"s":"caf\\u00e9 \\"q\\" \\\\ \\n"}', s, 'ok café "q" \\ \n');
  check('{"s":"\\ud83d\\ude00"}', s, 'ok 😀');
  check('{"s":"\\x"}', s, 'err malformed event: invalid string at byte 5: invalid escape at line 1 column 3');
  check('{"s":"\\ud800"}', s, 'err malformed event: invalid string at byte 5: unexpected end of hex escape at line 1 column 8');
  check('{"s":"\\udc00"}', s, 'err malformed event: invalid string at byte 5: lone leading surrogate in hex escape at line 1 column 7');
  check('{"s":"\\u12"}', s, 'err malformed event: invalid string at byte 5: EOF while parsing a string at line 1 column 6');
  check('{"s":"a\\n\tb"}', s, 'err malformed event: invalid string at byte 5: control character (\\u0000-\\u001F) found while parsing a string at line 1 column 5');
  check('{"s":"a\tb"}', s, 'err malformed event: control character in a string at byte 7');
});

test('long strings are cut in messages', () => {
  const json = `{"color":"${'x'.repeat(100)}"}`;
  assert.throws(
    () => Event.parse(json).token('color', 64),
    (e: Reject) => e.reason.endsWith(`got "${'x'.repeat(64)}..."`),
  );
});

test('numbers and strings print as the Rust SDK prints them', () => {
  const debug: [number, string][] = [
    [1, '1.0'], [1.5, '1.5'], [1e300, '1e300'], [1e16, '1e16'], [9999999999999998, '9999999999999998.0'],
    [0.0001, '0.0001'], [0.00005, '5e-5'], [-2.5e-7, '-2.5e-7'], [123456789.125, '123456789.125'],
    [Infinity, 'inf'], [NaN, 'NaN'], [-0, '-0.0'], [1.2345678901234568e20, '1.2345678901234568e20'],
  ];
  for (const [x, want] of debug) assert.equal(rustDebug(x), want, String(x));
  const json: [number, string][] = [
    [1, '1.0'], [2.5, '2.5'], [0.00005, '0.00005'], [0.000001, '1e-6'], [1e16, '1e+16'], [1e15, '1000000000000000.0'],
    [1.5e-10, '1.5e-10'], [1e300, '1e+300'], [-0, '-0.0'], [18446744073709551615, '1.8446744073709552e+19'],
  ];
  for (const [x, want] of json) assert.equal(jsonFloat(x), want, String(x));
  assert.equal(jsonString('a"b\\c\n\r\t\u0001\b\f'), '"a\\"b\\\\c\\n\\r\\t\\u0001\\u0008\\u000c"');
});
