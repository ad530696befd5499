use super::*;

fn op(process: u64, action: Action, from_ms: u64, to_ms: u64, outcome: Outcome) -> Operation {
    Operation {
        process,
        key: "k".to_string(),
        peer: 0,
        action,
        invoked: Duration::from_millis(from_ms),
        completed: Duration::from_millis(to_ms),
        outcome,
    }
}

fn write(process: u64, value: u64, from_ms: u64, to_ms: u64, outcome: Outcome) -> Operation {
    op(process, Action::Write(value), from_ms, to_ms, outcome)
}

fn read(process: u64, value: Option<u64>, from_ms: u64, to_ms: u64) -> Operation {
    op(process, Action::Read, from_ms, to_ms, Outcome::Read(value))
}

fn unknown() -> Outcome {
    Outcome::Unknown("timeout".into())
}

#[test]
fn a_read_after_a_write_sees_it_or_a_later_one() {
    let history = [
        read(0, None, 0, 1),
        write(0, 1, 2, 3, Outcome::Written),
        read(1, Some(1), 4, 5),
        write(1, 2, 6, 8, Outcome::Written),
        read(0, Some(2), 7, 9),
    ];
    assert_eq!(is_linearizable(&history), Ok(true));
}

#[test]
fn a_stale_read_after_an_acknowledged_write_is_not_linearizable() {
    let history = [
        write(0, 1, 0, 1, Outcome::Written),
        write(0, 2, 2, 3, Outcome::Written),
        read(1, Some(1), 4, 5),
    ];
    assert_eq!(is_linearizable(&history), Ok(false));
}

#[test]
fn reading_the_value_of_a_failed_write_is_not_linearizable() {
    let history = [write(0, 1, 0, 1, Outcome::Failed("409".into())), read(1, Some(1), 2, 3)];
    assert_eq!(is_linearizable(&history), Ok(false));
}

#[test]
fn a_write_with_an_unknown_outcome_may_take_effect_much_later_or_never() {
    let late = [
        write(0, 1, 0, 1, Outcome::Written),
        write(1, 2, 2, 3, unknown()),
        read(2, Some(1), 10, 11),
        read(2, Some(2), 20, 21),
    ];
    assert_eq!(is_linearizable(&late), Ok(true));
    let never = [write(1, 2, 2, 3, unknown()), read(2, None, 10, 11)];
    assert_eq!(is_linearizable(&never), Ok(true));
    let before_invoked = [read(2, Some(2), 0, 1), write(1, 2, 2, 3, unknown())];
    assert_eq!(is_linearizable(&before_invoked), Ok(false));
}

#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    let history = [
        write(0, 1, 0, 10, Outcome::Written),
        write(1, 2, 1, 9, Outcome::Written),
        read(2, Some(1), 11, 12),
        read(3, Some(1), 13, 14),
    ];
    assert_eq!(is_linearizable(&history), Ok(true));
    let flip_flop = [
        write(0, 1, 0, 10, Outcome::Written),
        write(1, 2, 1, 9, Outcome::Written),
        read(2, Some(1), 11, 12),
        read(3, Some(2), 13, 14),
    ];
    assert_eq!(is_linearizable(&flip_flop), Ok(false));
}

#[test]
fn every_key_is_checked_on_its_own() {
    let mut other = write(5, 9, 0, 1, Outcome::Written);
    other.key = "other".into();
    let mut history = vec![write(0, 1, 0, 1, Outcome::Written), read(1, Some(2), 2, 3), other];
    let report = check_linearizability(&history, Duration::from_secs(10), 2);
    assert_eq!(report.keys, 2);
    assert_eq!(report.violations.len(), 1, "{report:?}");
    assert_eq!(report.violations[0].0, "k");
    history.remove(1);
    assert!(check_linearizability(&history, Duration::from_secs(10), 2).is_linearizable());
}

#[test]
fn an_acknowledged_write_is_lost_when_the_key_is_absent_or_an_earlier_write_won() {
    let finals = |value: Option<u64>| BTreeMap::from([("k".to_string(), value)]);
    let history = [
        write(0, 1, 0, 1, Outcome::Written),
        write(0, 2, 2, 3, Outcome::Written),
        write(1, 3, 2, 5, unknown()),
    ];
    assert_eq!(lost_writes(&history, &finals(Some(2))), vec![]);
    // 3 may have been applied after 2.
    assert_eq!(lost_writes(&history, &finals(Some(3))), vec![]);
    assert_eq!(lost_writes(&history, &finals(Some(1))), vec![history[1].clone()]);
    assert_eq!(lost_writes(&history, &finals(None)).len(), 2);
}

#[test]
fn only_writes_a_cut_off_peer_acknowledged_while_cut_count_as_minority_acks() {
    let on = |peer, mut op: Operation| {
        op.peer = peer;
        op
    };
    let history = [
        on(1, write(0, 1, 0, 150, Outcome::Written)),
        on(1, write(1, 2, 200, 300, Outcome::Written)),
        on(0, write(2, 3, 200, 300, Outcome::Written)),
        on(1, write(3, 4, 200, 300, unknown())),
        on(1, write(4, 5, 300, 600, Outcome::Written)),
    ];
    let window = PartitionWindow {
        peer: 1,
        from: Duration::from_millis(100),
        until: Duration::from_millis(500),
    };
    assert_eq!(minority_acks(&history, &[window]), vec![history[1].clone()]);
}
