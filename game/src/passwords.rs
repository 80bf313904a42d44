//! Password hashing off the game thread. Argon2 is slow on purpose; the
//! game thread must not wait for it. The result comes back to the game as a
//! continuation: a server call (entity, method, args).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::msg::{EntityId, GameInput};

/// Where a result goes: `method` on `entity` with args `[result, context]`.
#[derive(Debug)]
pub struct Continuation {
    /// The entity to call.
    pub entity: EntityId,
    /// The method to call.
    pub method: String,
    /// A MessagePack value passed back untouched.
    pub context: Vec<u8>,
    /// Counts the job against the plugin that asked until its answer has
    /// run.
    pub charge: Option<wyrm_dispatcher::Charge>,
}

enum Job {
    Hash(String, Continuation),
    Verify(String, String, Continuation),
}

/// A small pool of hashing threads, shared by every game of the process.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: crossbeam_channel::Sender<Job>,
    answers: crate::msg::Answers,
}

/// Hashes waiting per thread before more are refused. At tens of
/// milliseconds a hash (more on a busy machine), this is about a second of
/// work: a login past that would wait longer than its player does, and a
/// storm of logins retried by clients that gave up would only grow the
/// queue with work nobody waits for.
const QUEUE_PER_WORKER: usize = 16;

impl PasswordPool {
    /// Starts `workers` threads that deliver results through `answers`.
    pub fn start(workers: usize, answers: crate::msg::Answers) -> std::io::Result<Self> {
        let (jobs, rx) = crossbeam_channel::bounded::<Job>(QUEUE_PER_WORKER * workers.max(1));
        for i in 0..workers.max(1) {
            let (rx, answers) = (rx.clone(), answers.clone());
            std::thread::Builder::new()
                .name(format!("wyrm-passwords-{i}"))
                .spawn(move || {
                    for job in rx {
                        let (args, cont) = run(job);
                        let msg = GameInput::host_call(cont.entity, cont.method, args, cont.charge);
                        answers.deliver(msg);
                    }
                })?;
        }
        Ok(Self { jobs, answers })
    }

    /// Hashes `password`; the result arrives as `[hash: string, context]`
    /// (`nil` for the hash if it failed, or the queue was full: too busy).
    pub fn hash(&self, password: String, cont: Continuation) {
        self.queue(Job::Hash(password, cont));
    }

    /// Checks `password` against `hash`; arrives as `[ok: bool, context]`
    /// (`nil` for `ok` if the queue was full: not checked, too busy, which
    /// a plugin must not take for a wrong password).
    pub fn verify(&self, password: String, hash: String, cont: Continuation) {
        self.queue(Job::Verify(password, hash, cont));
    }

    fn queue(&self, job: Job) {
        let job = match self.jobs.try_send(job) {
            Ok(()) => return,
            Err(crossbeam_channel::TrySendError::Full(job)) => job,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return,
        };
        tracing::warn!(
            "{} password hashes are waiting; answering this one as too busy (nil)",
            self.jobs.capacity().unwrap_or(0)
        );
        let (args, cont) = refuse(job);
        self.answers.deliver(GameInput::host_call(
            cont.entity,
            cont.method,
            args,
            cont.charge,
        ));
    }
}

/// The answer to a job refused for lack of room: nil, "not done".
fn refuse(job: Job) -> (Vec<u8>, Continuation) {
    let mut args = Vec::with_capacity(16);
    let _ = rmp::encode::write_array_len(&mut args, 2);
    let _ = rmp::encode::write_nil(&mut args);
    let cont = match job {
        Job::Hash(_, cont) | Job::Verify(_, _, cont) => cont,
    };
    push_context(&mut args, &cont.context);
    (args, cont)
}

fn push_context(args: &mut Vec<u8>, context: &[u8]) {
    if context.is_empty() {
        let _ = rmp::encode::write_nil(args);
    } else {
        args.extend_from_slice(context);
    }
}

fn run(job: Job) -> (Vec<u8>, Continuation) {
    let mut args = Vec::with_capacity(128);
    let _ = rmp::encode::write_array_len(&mut args, 2);
    let cont = match job {
        Job::Hash(password, cont) => {
            let salt = SaltString::generate(&mut OsRng);
            match Argon2::default().hash_password(password.as_bytes(), &salt) {
                Ok(h) => {
                    let _ = rmp::encode::write_str(&mut args, &h.to_string());
                }
                Err(e) => {
                    tracing::error!("password hashing failed: {e}");
                    let _ = rmp::encode::write_nil(&mut args);
                }
            }
            cont
        }
        Job::Verify(password, hash, cont) => {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            let _ = rmp::encode::write_bool(&mut args, ok);
            cont
        }
    };
    push_context(&mut args, &cont.context);
    (args, cont)
}
