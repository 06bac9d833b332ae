"""Layer selection: budget, wanted height, hysteresis, pausing, probing, keyframe switches."""

from __future__ import annotations

import pytest

from media.simulcast import (
    NOMINAL_BPS,
    Demand,
    Layer,
    LayerMeter,
    LayerSwitch,
    Prober,
    Verdict,
    allocate,
    highest_wanted,
    layers_now,
)

THREE = (Layer(0, 150_000, 120), Layer(1, 500_000, 240), Layer(2, 1_500_000, 480))


@pytest.mark.parametrize(
    ("max_height", "expected"),
    [(None, 2), (480, 2), (1080, 2), (479, 1), (240, 1), (200, 0), (120, 0), (90, 0), (0, None)],
)
def test_highest_wanted_by_height(max_height: int | None, expected: int | None) -> None:
    assert highest_wanted(THREE, max_height) == expected


def test_a_layer_of_unknown_height_counts_as_too_tall_except_the_lowest() -> None:
    layers = (Layer(0, 1, None), Layer(1, 2, None))
    assert highest_wanted(layers, 1000) == 0
    assert highest_wanted(layers, None) == 1
    assert highest_wanted((), None) is None


@pytest.mark.parametrize(
    ("estimate", "audio", "current", "max_height", "expected"),
    [
        (None, 0, None, None, 2),  # nothing known: no limit
        (5_000_000, 40_000, None, None, 2),
        (300_000, 40_000, None, None, 0),  # the 300 kbit/s subscriber: the low layer
        (700_000, 40_000, None, None, 1),
        # moving up from 0 to 1 needs 15 % headroom on the step (350 kbit/s)
        (40_000 + 150_000 + 380_000, 40_000, 0, None, 0),
        (40_000 + 150_000 + 410_000, 40_000, 0, None, 1),
        # staying on 1 needs a little less than its rate (no switching on every wobble)
        (40_000 + 500_000, 40_000, 1, None, 1),
        (40_000 + 470_000, 40_000, 1, None, 1),
        (40_000 + 440_000, 40_000, 1, None, 0),
        # audio first: what is left cannot carry the lowest layer -> paused
        (180_000, 40_000, None, None, None),
        (100_000, 40_000, 2, None, None),
        (40_000 + 140_000, 40_000, 0, None, 0),  # a paused video comes back only when it fits
        # a small tile gets the small layer with bandwidth to spare
        (10_000_000, 40_000, 2, 180, 0),
        (10_000_000, 40_000, None, 240, 1),
        # a hidden tab: paused
        (10_000_000, 40_000, 2, 0, None),
    ],
)
def test_allocate_one_video(
    estimate: float | None,
    audio: float,
    current: int | None,
    max_height: int | None,
    expected: int | None,
) -> None:
    got = allocate(estimate, audio, [Demand("a", THREE, max_height, current)])
    assert got == {"a": expected}


def test_allocate_shares_the_budget_lowest_layers_first_then_round_robin() -> None:
    demands = [Demand("speaker", THREE), Demand("b", THREE), Demand("c", THREE)]
    # 3 x 150 k for the lowest layers, then 350 k steps: two fit
    got = allocate(450_000 + 2 * 350_000 * 1.15 + 1, 0, demands)
    assert got == {"speaker": 1, "b": 1, "c": 0}
    # not even three lowest layers: the first in the list (the speaker) keeps video
    got = allocate(320_000, 0, demands)
    assert got == {"speaker": 0, "b": 0, "c": None}


def test_allocate_probe_steps_unpause_before_they_upgrade() -> None:
    demands = [Demand("a", THREE), Demand("b", THREE, current=0)]
    got = allocate(100_000, 0, demands, extra_steps=1)
    assert got == {"a": 0, "b": None}  # the first in the list is the first to get video back


def test_allocate_probe_steps_go_over_the_budget() -> None:
    got = allocate(300_000, 0, [Demand("a", THREE, current=0)], extra_steps=1)
    assert got == {"a": 1}
    got = allocate(300_000, 0, [Demand("a", THREE, current=0)], extra_steps=0)
    assert got == {"a": 0}


def test_layer_meter_bitrate_activity_and_nominal_fallback() -> None:
    meter = LayerMeter(1, height=240)
    for i in range(100):
        meter.packet(1000, 10.0 + i * 0.01)  # 100 kB/s for one second
    assert meter.bitrate(10.99) == pytest.approx(800_000)
    assert meter.active(11.0) and not meter.active(13.0)
    idle = LayerMeter(0)
    idle.packet(100, 10.98)
    gone = LayerMeter(2)
    gone.packet(100, 5.0)
    layers = layers_now([meter, gone, idle], 11.0)
    assert [layer.index for layer in layers] == [0, 1]  # the silent top layer is left out
    assert layers[1].bps == pytest.approx(800_000) and layers[1].height == 240
    assert layers_now([idle], 12.2)[0].bps == NOMINAL_BPS[0]  # window empty: nominal


def test_switch_only_at_a_keyframe_of_the_target() -> None:
    switch = LayerSwitch()
    assert switch.retarget(0) is True
    table = [
        # (layer, keyframe start) -> verdict
        ((0, False), Verdict.DROP),  # no keyframe yet: nothing
        ((2, True), Verdict.DROP),  # a keyframe of another layer
        ((0, True), Verdict.SWITCH),
        ((0, False), Verdict.FORWARD),
        ((1, False), Verdict.DROP),
    ]
    for (layer, key), verdict in table:
        assert switch.packet(layer, key) == verdict, (layer, key)
    assert switch.switches == 0  # starting is not a switch
    assert switch.retarget(2) is True and switch.pending
    assert switch.packet(0, False) == Verdict.FORWARD  # the old layer goes on until then
    assert switch.packet(2, False) == Verdict.DROP
    assert switch.packet(2, True) == Verdict.SWITCH
    assert switch.packet(0, True) == Verdict.DROP
    assert switch.switches == 1 and not switch.pending
    assert switch.retarget(2) is False
    assert switch.retarget(None) is False  # paused at once
    assert switch.packet(2, True) == Verdict.DROP


def test_prober_backs_off_when_the_estimate_does_not_follow() -> None:
    prober = Prober()
    assert not prober.start(constrained=False, loss=0.0, needed_bps=1e6, now=0.0)
    assert not prober.start(constrained=True, loss=0.05, needed_bps=1e6, now=0.0)
    assert prober.start(constrained=True, loss=0.0, needed_bps=700_000, now=0.0, estimate_bps=3e5)
    assert prober.probing(1.0) and prober.settle(700_000, 0.0, 1.0) is None
    assert prober.settle(300_000, 0.0, 3.0) is False  # the estimate stayed low
    assert not prober.start(True, 0.0, 7e5, now=8.9)  # back-off doubled to 6 s
    assert prober.start(True, 0.0, 7e5, now=9.0)
    assert prober.settle(750_000, 0.0, 12.0) is True
    assert prober.backoff_s == prober.base_backoff_s and prober.next_at == 15.0
    assert (prober.succeeded, prober.failed) == (1, 1)


def test_a_probe_goes_on_while_the_estimate_keeps_growing() -> None:
    prober = Prober()
    assert prober.start(True, 0.0, needed_bps=1_000_000, now=0.0, estimate_bps=500_000)
    assert prober.settle(600_000, 0.0, 3.0) is None  # +20 %: another window
    assert prober.probing(4.0)
    assert prober.settle(700_000, 0.0, 6.0) is None
    assert prober.settle(1_000_000, 0.0, 9.0) is True
    assert prober.start(True, 0.0, 2_000_000, now=12.0, estimate_bps=1_000_000)
    assert prober.settle(1_050_000, 0.0, 15.0) is False  # +5 %: not enough to go on
    assert prober.start(True, 0.0, 10_000_000, now=21.0, estimate_bps=1e6)
    for at, estimate in ((24.0, 1.2e6), (27.0, 1.4e6), (30.0, 1.6e6), (33.0, 1.8e6)):
        assert prober.settle(estimate, 0.0, at) is None  # growing, for max_windows windows
    assert prober.settle(2.5e6, 0.0, 36.0) is False


def test_prober_back_off_is_bounded() -> None:
    prober = Prober()
    now = 0.0
    for _ in range(10):
        assert prober.start(True, 0.0, 1e6, now)
        now += prober.window_s
        assert prober.settle(None, 0.0, now) is False
        now = prober.next_at
    assert prober.backoff_s == prober.max_backoff_s
