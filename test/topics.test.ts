/**
 * The topic map: building, filtering and matching topics, and refusing ids that would break a topic.
 */
import test from 'ava';
import { topicMatches } from '../runtime/mqtt.ts';
import { sharedFilter, TOPIC_ROOT, TopicParamError, topics } from '../schemas/topics.ts';

test('build, filter and match are consistent for every topic', (t) => {
  for (const [name, spec] of Object.entries(topics)) {
    const values = Object.fromEntries(spec.params.map((p) => [p, `x-${p}`])) as never;
    const topic = spec.build(values);
    t.true(topic.startsWith(`${TOPIC_ROOT}/`), name);
    t.deepEqual(spec.match(topic), values, name);
    t.true(topicMatches(spec.filter(), topic), name);
    t.false(topic.includes('+') || topic.includes('#'), name);
  }
});

test('a topic of one kind does not match another', (t) => {
  const req = topics.request.build({ device: 'r1' });
  t.is(topics.result.match(req), undefined);
  t.is(topics.request.match(`${req}/extra`), undefined);
  t.is(topics.request.match('other/v1/devices/r1/request'), undefined);
});

test('ids with wildcards, separators or nothing are refused', (t) => {
  for (const bad of ['', 'a/b', '+', '#', 'x+y', '$sys', 'a'.repeat(65), 'sp ace']) {
    t.throws(() => topics.plan.build({ device: bad }), { instanceOf: TopicParamError }, JSON.stringify(bad));
  }
});

test('shared filters and wildcard matching follow the MQTT rules', (t) => {
  t.is(sharedFilter('tails', topics.request.filter()), '$share/tails/edgecut/v1/devices/+/request');
  t.true(topicMatches('$share/tails/edgecut/v1/devices/+/request', 'edgecut/v1/devices/r1/request'));
  t.true(topicMatches('edgecut/#', 'edgecut/v1/a/b'));
  t.true(topicMatches('edgecut/v1/#', 'edgecut/v1'));
  t.false(topicMatches('edgecut/+', 'edgecut/v1/a'));
  // [MQTT-4.7.2-1]: wildcards at the first level do not match $ topics.
  t.false(topicMatches('#', '$SYS/broker/load'));
  t.false(topicMatches('+/broker/load', '$SYS/broker/load'));
});
