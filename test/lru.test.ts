/**
 * The least-recently-used cache of sessions (runtime/lru.ts): bounded, the least recently used evicted and disposed.
 */
import test from 'ava';
import { LruCache } from '../runtime/lru.ts';

test('beyond its capacity the least recently used entry is evicted and disposed; peek does not count as use', (t) => {
  const evicted: string[] = [];
  const c = new LruCache<string, number>(2, (k) => evicted.push(k));
  c.set('a', 1);
  c.set('b', 2);
  t.is(c.get('a'), 1);
  c.set('c', 3);
  t.deepEqual(evicted, ['b']);
  t.is(c.peek('a'), 1);
  c.set('d', 4);
  t.deepEqual(evicted, ['b', 'a']);
  t.is(c.size, 2);
  c.delete('c');
  t.deepEqual(evicted, ['b', 'a'], 'delete does not dispose');
  c.clear();
  t.deepEqual(evicted, ['b', 'a', 'd']);
  t.is(c.size, 0);
  t.throws(() => new LruCache(0), { message: /capacity must be >= 1/ });
});
