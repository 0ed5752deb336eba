"""The event queues behind GameClient's callbacks: nothing is lost, nothing grows unbounded."""

import pytest

from gamesession.client.events import EventQueue, EventSlot


def test_events_wait_for_a_handler_then_arrive_in_order():
    queue, got = EventQueue(), []
    queue.emit(1)
    queue.emit(2, "two")
    assert len(queue) == 2
    queue.handler = lambda *args: got.append(args)
    assert got == [(1,), (2, "two")] and len(queue) == 0
    queue.emit(3)
    assert got[-1] == (3,)


def test_unsetting_the_handler_queues_again():
    queue, got = EventQueue(), []
    queue.handler = got.append
    queue.handler = None
    queue.emit("x")
    assert got == [] and len(queue) == 1
    queue.handler = got.append
    assert got == ["x"]


def test_the_queue_is_bounded_and_counts_what_it_dropped():
    queue, got = EventQueue(max_pending=3), []
    for i in range(5):
        queue.emit(i)
    assert queue.overflowed == 2
    queue.handler = got.append
    assert got == [2, 3, 4]


def test_a_handler_must_be_callable():
    with pytest.raises(TypeError):
        EventQueue().handler = "print"


class Owner:
    on_a = EventSlot("a happened")
    on_b = EventSlot("b happened")


def test_slots_are_per_instance_and_documented():
    one, two, got = Owner(), Owner(), []
    Owner.on_a.queue(one).emit("for one")
    two.on_a = got.append
    assert got == [] and one.on_a is None and two.on_a == got.append
    one.on_a = got.append
    assert got == ["for one"]
    assert Owner.on_a.__doc__ == "a happened"
