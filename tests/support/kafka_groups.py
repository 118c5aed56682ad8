"""Starting a test's consumer groups at the end of their topics.

A service's new consumer group reads its topics from the start (nothing is missed in production). A test or
benchmark that gives a service a throwaway group wants only what it publishes itself: committing the current
end offsets for the group first makes the service start there, while a restarted process of the same group
still resumes from the last commit, exactly as in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition


async def seed_groups_at_end(bootstrap: str, groups: Mapping[str, Sequence[str]]) -> None:
    """Commit end offsets of `topics` for each `group` (which must have no running members)."""
    for group, topics in groups.items():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = []
            for topic in topics:
                known = consumer.partitions_for_topic(topic)
                if not known:
                    await consumer._client.force_metadata_update()
                    known = consumer.partitions_for_topic(topic) or set()
                partitions += [TopicPartition(topic, p) for p in sorted(known)]
            ends = await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()
