//! Extending registers from a log, and checking them against the values the
//! hardware signed.

use ::digest::{Digest, Output};

use super::identity::{self, RuntimeAppInfo};
use super::{EV_NO_ACTION, EventBody, LogEvent, RuntimeEvent, runtime_event_digest};
use crate::{AttestError, Malformed};

/// The [`Malformed::Unexpected`] part of a boot event on the app register:
/// its stated digest could stand for any event, an identity event included.
pub const BOOT_EVENT_ON_APP_REGISTER: &str = "boot event on the app register";

/// The [`Malformed::Unexpected`] part of an identity-time runtime event whose
/// name holds a `':'` (its digest would have two readings).
pub const COLON_IN_EVENT_NAME: &str = "':' in a runtime event name";

/// A platform's bank of hash-chained registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterSet {
    /// How many registers exist (TDX: 4 RTMRs; a TPM bank: 24 PCRs).
    pub count: usize,
    /// The register that carries the dstack app identity (TDX: RTMR3).
    /// Only runtime events may extend it.
    pub app_register: u32,
    /// Register names are `{prefix}{index}` (`rtmr3`, `pcr14`).
    pub prefix: &'static str,
}

impl RegisterSet {
    /// The name of register `i`.
    pub fn name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }
}

/// How many runtime-extendable registers a TD has (RTMR0..3).
pub const TDX_RTMR_COUNT: usize = 4;

/// The RTMR that carries the app identity: dstack's runtime events extend
/// RTMR3.
pub const TDX_APP_RTMR: u32 = 3;

/// TDX's runtime-extendable registers as dstack uses them: RTMR0..3, the
/// app identity in RTMR3 (named `rtmr0`..`rtmr3`, [`crate::names::reg`]).
pub const TDX_RTMRS: RegisterSet = RegisterSet {
    count: TDX_RTMR_COUNT,
    app_register: TDX_APP_RTMR,
    prefix: "rtmr",
};

fn extend<D: Digest>(reg: &mut Output<D>, digest: &[u8]) {
    let mut h = D::new();
    h.update(&*reg);
    h.update(digest);
    *reg = h.finalize();
}

/// Replays `events` into `set.count` registers that start at zero:
/// `R[i] = H(R[i] ‖ digest)` for every event except `EV_NO_ACTION` boot
/// events. Runtime events are extended with their recomputed digest, boot
/// events with the digest the log states (which must have the hash's size).
///
/// The app register takes runtime events only: a boot event there (even
/// `EV_NO_ACTION`) is an error, since its stated digest could stand for
/// anything, including an identity event re-typed to hide it.
pub fn replay<D: Digest>(
    events: &[LogEvent],
    set: &RegisterSet,
) -> Result<Vec<Output<D>>, AttestError> {
    let mut regs = vec![Output::<D>::default(); set.count];
    for (i, ev) in events.iter().enumerate() {
        let reg = usize::try_from(ev.register)
            .ok()
            .and_then(|r| regs.get_mut(r))
            .ok_or_else(|| {
                AttestError::from(Malformed::BadValue {
                    what: "register".into(),
                    expected: format!("0..{}", set.count),
                    found: ev.register.to_string(),
                })
                .within(format!("event {i}"))
            })?;
        match &ev.body {
            EventBody::Runtime(r) => {
                extend::<D>(
                    reg,
                    &runtime_event_digest::<D>(&r.name, &r.payload, r.version),
                );
            }
            EventBody::Boot(b) => {
                if ev.register == set.app_register {
                    return Err(Malformed::Unexpected {
                        what: BOOT_EVENT_ON_APP_REGISTER,
                        detail: format!(
                            "event {i} of type {:#x} extends {}, which only dstack runtime events (type {:#x}) may extend",
                            b.event_type,
                            set.name(ev.register as usize),
                            super::DSTACK_RUNTIME_EVENT_TYPE
                        ),
                    }
                    .into());
                }
                if b.event_type == EV_NO_ACTION {
                    continue;
                }
                if b.digest.len() != <D as Digest>::output_size() {
                    return Err(AttestError::from(Malformed::BadLength {
                        what: format!(
                            "the digest of type {:#x} in {}",
                            b.event_type,
                            set.name(ev.register as usize)
                        ),
                        expected: <D as Digest>::output_size(),
                        found: b.digest.len(),
                    })
                    .within(format!("event {i}")));
                }
                extend::<D>(reg, &b.digest);
            }
        }
    }
    Ok(regs)
}

/// A log whose replay reproduced the registers the hardware signed.
///
/// The only way to read an app identity from a log: [`ReplayedLog::check`]
/// is its one constructor, so code that has not compared the replay with the
/// signed registers cannot hold one.
#[derive(Clone, Debug)]
pub struct ReplayedLog {
    events: Vec<LogEvent>,
    set: RegisterSet,
}

impl ReplayedLog {
    /// Replays `events` and compares each register with `signed[i]`, the
    /// value the hardware signed. `None` leaves a register unchecked (a
    /// stripped log that carries only the app register's events); the app
    /// register must always be checked. The first register that differs is
    /// reported as [`AttestError::IdentityMismatch`].
    pub fn check<D: Digest>(
        events: Vec<LogEvent>,
        set: &RegisterSet,
        signed: &[Option<&[u8]>],
    ) -> Result<Self, AttestError> {
        if signed.len() != set.count {
            return Err(Malformed::BadValue {
                what: "signed register values".into(),
                expected: format!("{}, one per register", set.count),
                found: signed.len().to_string(),
            }
            .into());
        }
        if signed
            .get(set.app_register as usize)
            .is_none_or(Option::is_none)
        {
            return Err(Malformed::Missing {
                what: "app register value",
                detail: format!(
                    "the app register {} must be checked",
                    set.name(set.app_register as usize)
                ),
            }
            .into());
        }
        let replayed = replay::<D>(&events, set)?;
        boot_names_are_unambiguous(&events, set)?;
        for (i, (want, got)) in signed.iter().zip(&replayed).enumerate() {
            if let Some(want) = want {
                if *want != got.as_slice() {
                    return Err(AttestError::identity_mismatch(&set.name(i), want, got));
                }
            }
        }
        Ok(ReplayedLog { events, set: *set })
    }

    /// Every event of the log, in order.
    pub fn events(&self) -> &[LogEvent] {
        &self.events
    }

    /// The runtime events on the app register, in order.
    pub fn runtime_events(&self) -> impl Iterator<Item = &RuntimeEvent> {
        app_events(&self.events, &self.set)
    }

    /// The app identity the runtime events carry, before `system-ready`.
    pub fn app_info(&self) -> Result<RuntimeAppInfo, AttestError> {
        identity::extract(self.runtime_events())
    }

    /// The app register replayed up to and including the first runtime
    /// event named `name` (dstack's boot-time `boot_mr`, up to
    /// `boot-mr-done`); `None` when no such event exists.
    pub fn app_register_until<D: Digest>(&self, name: &str) -> Option<Output<D>> {
        let mut reg = Output::<D>::default();
        for ev in self.runtime_events() {
            extend::<D>(
                &mut reg,
                &runtime_event_digest::<D>(&ev.name, &ev.payload, ev.version),
            );
            if ev.name == name {
                return Some(reg);
            }
        }
        None
    }
}

/// Refuses a runtime event on the app register, before the first
/// `system-ready`, whose name contains `':'`.
///
/// The v1 digest hashes `type ‖ ":" ‖ name ‖ ":" ‖ payload`, which does not
/// say where the name ends: `("instance-id", ":" ‖ rest)` and
/// `("instance-id:", rest)` extend the register identically. dstack's own
/// boot-time names never contain `':'`, so with this rule the first `':'`
/// after the type is the end of the name and each identity event has one
/// reading. Events after `system-ready` (the app's own) may use any name:
/// they carry no identity, and a re-split one can never move before the
/// first `system-ready`, whose position the register fixes.
fn boot_names_are_unambiguous(events: &[LogEvent], set: &RegisterSet) -> Result<(), AttestError> {
    for ev in app_events(events, set) {
        if ev.name == super::SYSTEM_READY {
            break;
        }
        if ev.name.contains(':') {
            return Err(Malformed::Unexpected {
                what: COLON_IN_EVENT_NAME,
                detail: format!(
                    "runtime event {:?} before {:?} has a ':' in its name, which makes its digest ambiguous",
                    ev.name,
                    super::SYSTEM_READY
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// The runtime events on the app register. Every event there is one once
/// [`replay`] accepted the log.
pub(super) fn app_events<'a>(
    events: &'a [LogEvent],
    set: &RegisterSet,
) -> impl Iterator<Item = &'a RuntimeEvent> {
    let app = set.app_register;
    events
        .iter()
        .filter(move |e| e.register == app)
        .filter_map(LogEvent::as_runtime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use sha2::{Sha256, Sha384};

    const SET: RegisterSet = RegisterSet {
        count: 4,
        app_register: 3,
        prefix: "rtmr",
    };

    #[test]
    fn replay_is_generic_over_the_hash() {
        let set = RegisterSet {
            count: 2,
            app_register: 1,
            prefix: "pcr",
        };
        let events = vec![
            LogEvent::runtime(0, "x", b"1"),
            LogEvent::runtime(1, "y", b""),
        ];
        let regs = replay::<Sha256>(&events, &set).unwrap();
        let d = runtime_event_digest::<Sha256>("x", b"1", super::super::RuntimeEventVersion::V1);
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(d);
        assert_eq!(regs[0], h.finalize());
        assert_eq!(regs[0].len(), 32);
    }

    #[test]
    fn replay_rejects_out_of_range_register_and_bad_digest_size() {
        let err = replay::<Sha384>(&[LogEvent::runtime(4, "x", b"")], &SET).unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&Malformed::BadValue {
                what: "register".into(),
                expected: "0..4".into(),
                found: "4".into()
            })
        );
        assert_eq!(
            err.to_string(),
            "malformed: event 0: register: expected 0..4, found 4"
        );
        let ev = LogEvent::boot(0, 0x8000_0001, vec![0; 32], vec![]);
        let err = replay::<Sha384>(std::slice::from_ref(&ev), &SET).unwrap_err();
        assert_eq!(
            err.malformed(),
            Some(&Malformed::BadLength {
                what: "the digest of type 0x80000001 in rtmr0".into(),
                expected: 48,
                found: 32
            })
        );
        // EV_NO_ACTION is skipped whatever its digest.
        let noop = LogEvent::boot(0, EV_NO_ACTION, vec![1], vec![]);
        assert_eq!(
            replay::<Sha384>(&[noop], &SET).unwrap(),
            vec![Output::<Sha384>::default(); 4]
        );
    }

    #[test]
    fn the_app_register_takes_runtime_events_only() {
        // A re-typed identity event: its real digest, stated under another type.
        let digest = runtime_event_digest::<Sha384>(
            "instance-id",
            &[1; 20],
            super::super::RuntimeEventVersion::V1,
        );
        for ty in [0x0800_0002, EV_NO_ACTION, 0x8000_0001] {
            let ev = LogEvent::boot(3, ty, digest.to_vec(), b"instance-id".to_vec());
            let err = replay::<Sha384>(&[ev], &SET).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Malformed);
            assert!(
                matches!(
                    err.malformed(),
                    Some(Malformed::Unexpected {
                        what: BOOT_EVENT_ON_APP_REGISTER,
                        ..
                    })
                ),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains("which only dstack runtime events (type 0x8000001) may extend"),
                "{err}"
            );
        }
    }

    #[test]
    fn check_names_the_register_and_requires_the_app_register() {
        let events = vec![LogEvent::runtime(3, "app-id", &[1; 20])];
        let regs = replay::<Sha384>(&events, &SET).unwrap();
        let zero = [0u8; 48];
        let good = [
            Some(&zero[..]),
            Some(&zero[..]),
            Some(&zero[..]),
            Some(&regs[3][..]),
        ];
        let checked = ReplayedLog::check::<Sha384>(events.clone(), &SET, &good).unwrap();
        assert_eq!(checked.events(), &events[..]);
        let stripped = [None, None, None, Some(&regs[3][..])];
        assert!(ReplayedLog::check::<Sha384>(events.clone(), &SET, &stripped).is_ok());
        let bad = [
            Some(&zero[..]),
            Some(&zero[..]),
            Some(&zero[..]),
            Some(&zero[..]),
        ];
        let err = ReplayedLog::check::<Sha384>(events.clone(), &SET, &bad).unwrap_err();
        assert!(
            matches!(&err, AttestError::IdentityMismatch { what, .. } if what == "rtmr3"),
            "{err}"
        );
        let unchecked = [Some(&zero[..]), None, None, None];
        let err = ReplayedLog::check::<Sha384>(events.clone(), &SET, &unchecked).unwrap_err();
        assert!(matches!(
            err.malformed(),
            Some(Malformed::Missing {
                what: "app register value",
                ..
            })
        ));
        assert_eq!(
            err.to_string(),
            "malformed: the app register rtmr3 must be checked"
        );
        assert!(matches!(
            ReplayedLog::check::<Sha384>(events, &SET, &good[..3])
                .unwrap_err()
                .malformed(),
            Some(Malformed::BadValue { .. })
        ));
    }

    #[test]
    fn app_register_until_stops_at_the_named_event() {
        let events = vec![
            LogEvent::runtime(3, "a", b""),
            LogEvent::runtime(3, "boot-mr-done", b""),
            LogEvent::runtime(3, "later", b"x"),
        ];
        let full = replay::<Sha384>(&events, &SET).unwrap();
        let upto = replay::<Sha384>(&events[..2], &SET).unwrap();
        let zero = [0u8; 48];
        let log = ReplayedLog::check::<Sha384>(
            events,
            &SET,
            &[
                Some(&zero[..]),
                Some(&zero[..]),
                Some(&zero[..]),
                Some(&full[3][..]),
            ],
        )
        .unwrap();
        assert_eq!(
            log.app_register_until::<Sha384>("boot-mr-done"),
            Some(upto[3])
        );
        assert_eq!(log.app_register_until::<Sha384>("missing"), None);
        assert_eq!(log.runtime_events().count(), 3);
    }
}
