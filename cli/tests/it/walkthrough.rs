//! The universal walkthrough of the seeds (000 and 003), verbatim.

use kuma_test_support::KumaCp;

use crate::support::{must_mask_age, Ctl, BACKEND_1, REDIS_1};

#[test]
fn the_seeds_walkthrough_registers_two_dataplanes_that_get_and_inspect_list_offline() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);

    ctl.must_apply(REDIS_1);
    ctl.must_apply(BACKEND_1);

    assert_eq!(
        must_mask_age(&ctl.must_run(&["get", "dataplanes"])),
        "MESH      NAME        TAGS              AGE\n\
         default   backend-1   service=backend   <age>\n\
         default   redis-1     service=redis     <age>\n"
    );
    assert_eq!(
        ctl.must_run(&["inspect", "dataplanes"]),
        "MESH      NAME        TAGS              STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
         default   backend-1   service=backend   Offline   never                never              0               0\n\
         default   redis-1     service=redis     Offline   never                never              0               0\n"
    );
}

#[test]
fn inspect_dataplanes_with_a_name_shows_only_that_dataplane_as_in_the_seeds() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(
        "type: Dataplane
mesh: default
name: dp-echo-1
networking:
  inbound:
  - interface: 127.0.0.1:10000:9000
    tags:
      service: echo",
    );
    ctl.must_apply(REDIS_1);

    // seeds/003, byte for byte.
    assert_eq!(
        ctl.must_run(&["inspect", "dataplanes", "dp-echo-1"]),
        "MESH      NAME        TAGS           STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
         default   dp-echo-1   service=echo   Offline   never                never              0               0\n"
    );
}
