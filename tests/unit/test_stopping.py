"""The stop policy: early stopping on validation CIDEr, a fixed schedule, epochs, a time budget."""

from training.checkpoints import TrainState
from training.stopping import StopPolicy


def finish_epoch(policy: StopPolicy, state: TrainState, score: float, seconds: float = 10.0):
    """What the trainer does after an epoch: advance, refit the budget, record, decide."""
    state.epoch += 1
    state.train_seconds += seconds
    state.history.append({"epoch": state.epoch, "seconds": state.train_seconds})
    planned = policy.plan(state)
    if planned is not None:
        state.planned_epochs = planned
    keep = policy.record(state, score)
    state.stopped = policy.reason(state)
    return keep


def test_best_keeps_improvements_and_stops_after_patience():
    policy = StopPolicy(epochs=10, selection="best", patience=2)
    state = TrainState()
    kept = [finish_epoch(policy, state, s) for s in (0.1, 0.3, 0.2, 0.25)]
    assert kept == [True, True, False, False]
    assert (state.best_score, state.best_epoch, state.wait) == (0.3, 2, 2)
    assert state.stopped == "early stop: no better val CIDEr for 2 epochs"
    assert not policy.running(state)


def test_last_keeps_every_epoch_and_runs_the_whole_schedule():
    policy = StopPolicy(epochs=3, selection="last", patience=1)
    state = TrainState()
    kept = [finish_epoch(policy, state, s) for s in (0.3, 0.2, 0.1)]
    assert kept == [True, True, True]
    assert state.best_epoch == 1 and state.stopped == "finished 3 epochs"


def test_without_a_budget_nothing_is_planned():
    policy = StopPolicy(epochs=5, selection="best", patience=5)
    state = TrainState()
    finish_epoch(policy, state, 0.1)
    assert policy.plan(state) is None and state.planned_epochs is None
    assert policy.running(state) and state.stopped is None


def test_a_budget_stops_at_the_epochs_that_fit_it():
    policy = StopPolicy(epochs=100, selection="last", patience=1, max_train_seconds=35.0)
    state = TrainState()
    while policy.running(state):
        finish_epoch(policy, state, 0.1)
    assert state.epoch == state.planned_epochs and state.train_seconds <= 35.0
    assert state.stopped.startswith(f"finished the {state.planned_epochs} epochs that fit")


def test_a_spent_budget_stops_even_when_more_epochs_were_planned():
    policy = StopPolicy(epochs=100, selection="last", patience=1, max_train_seconds=15.0)
    state = TrainState(planned_epochs=50)
    state.epoch, state.train_seconds = 3, 16.0
    assert policy.reason(state) == "time budget of 15 s reached"


def test_a_finished_state_is_not_running():
    policy = StopPolicy(epochs=3, selection="best", patience=3)
    assert not policy.running(TrainState(epoch=3))
    assert not policy.running(TrainState(epoch=1, stopped="early stop"))
