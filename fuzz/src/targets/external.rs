//! The helpers of the other languages, each run by its own runtime in a
//! child process (Node.js, CPython, and the C helper compiled natively with
//! sanitizers): the harnesses in `fuzz/harness/` read inputs from stdin
//! and answer each with a verdict, so the same corpus, mutations and
//! findings serve every language.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::protocol::msgpack_seeds;
use super::sdk::{args_seeds, state_seeds};
use super::MSGPACK_DICT;
use crate::engine::{Env, Runner, Target, Verdict};

/// How a harness is started; `cmd` is made afresh when it must restart.
#[derive(Clone)]
struct Spec {
    lang: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

macro_rules! lang_targets {
    ($($name:literal, $lang:ident, $mode:literal, $corpus:literal, $seeds:expr, $iters:expr, $about:literal;)*) => {
        vec![$(Target {
            name: $name,
            about: $about,
            corpus: $corpus,
            max_len: 2048,
            ci_iterations: $iters,
            dict: MSGPACK_DICT,
            seeds: $seeds,
            start: |env| start(env, Lang::$lang, $mode),
            in_process: false,
        }),*]
    };
}

pub fn targets() -> Vec<Target> {
    lang_targets![
        "js_msgpack", Js, "msgpack", "msgpack", msgpack_seeds, 8_000,
            "the JavaScript helper's MessagePack decode (only WyrmError thrown) and encode, under Node.js";
        "js_args", Js, "args", "args", args_seeds, 5_000,
            "method arguments through the JavaScript helper's `call` export";
        "js_state", Js, "state", "state", state_seeds, 8_000,
            "state through the JavaScript helper's importEntities, then export and import again";
        "py_msgpack", Py, "msgpack", "msgpack", msgpack_seeds, 10_000,
            "the Python helper's MessagePack decode (only wyrm.Error raised) and encode, under CPython";
        "py_args", Py, "args", "args", args_seeds, 8_000,
            "method arguments through the Python helper's call";
        "py_state", Py, "state", "state", state_seeds, 5_000,
            "state through the Python helper's import, then export and import again";
        "c_msgpack", C, "msgpack", "msgpack", msgpack_seeds, 30_000,
            "the C helper's reader (wyrm_skip, wyrm_read_raw and the typed reads agree) and writer, natively with ASan and UBSan";
        "c_args", C, "args", "args", args_seeds, 20_000,
            "method arguments through the C helper's call export and wyrm_args";
        "c_state", C, "state", "state", state_seeds, 20_000,
            "state through the C helper's import-entities and a plugin's load, then export and import again";
    ]
}

#[derive(Clone, Copy)]
enum Lang {
    Js,
    Py,
    C,
}

fn start(env: &Env, lang: Lang, mode: &str) -> Result<Box<dyn Runner>, String> {
    let harness = env.repo.join("fuzz/harness");
    let spec = match lang {
        Lang::Js => Spec {
            lang: "JavaScript",
            program: which("node")?,
            args: vec![
                path_arg(&harness.join("wyrm_js.mjs")),
                mode.into(),
                path_arg(&env.repo.join("sdk-js/wyrm.js")),
            ],
            env: Vec::new(),
        },
        Lang::Py => Spec {
            lang: "Python",
            program: which("python3")?,
            args: vec![
                path_arg(&harness.join("wyrm_py.py")),
                mode.into(),
                path_arg(&env.repo.join("sdk-python")),
            ],
            env: vec![("PYTHONDONTWRITEBYTECODE".into(), "1".into())],
        },
        Lang::C => Spec {
            lang: "C",
            program: c_harness(env)?,
            args: vec![mode.into()],
            // Report and stop at the first problem; leaks are checked
            // when the harness exits at the end of a run.
            env: vec![
                (
                    "ASAN_OPTIONS".into(),
                    "abort_on_error=1:detect_leaks=1:allocator_may_return_null=1".into(),
                ),
                (
                    "UBSAN_OPTIONS".into(),
                    "print_stacktrace=1:halt_on_error=1".into(),
                ),
            ],
        },
    };
    let mut h = Harness {
        spec,
        child: None,
        timeout: Duration::from_secs(20),
    };
    h.spawn()?;
    Ok(Box::new(h))
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `program` on the PATH, or what to do about it.
fn which(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{program} is not installed: run scripts/setup-polyglot (as root it installs it)"
            )
        })
}

/// Runs `scripts/setup-polyglot` once per process, as the conformance
/// tests do: the other languages' tests need their tools, in CI too.
pub fn setup_polyglot(repo: &Path) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let script = repo.join("scripts/setup-polyglot");
        match Command::new(&script).status() {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("{} failed ({s}); see its output above", script.display()),
            Err(e) => panic!("cannot run {}: {e}", script.display()),
        }
    });
}

// ---- the C harness ----------------------------------------------------

/// Compiles `fuzz/harness/wyrm_c.c` with the C helper and the bindings
/// `wyrm build` generates, once per process (and not again while its
/// sources are unchanged). With AddressSanitizer and UBSan if the
/// compiler has their runtimes, else without.
fn c_harness(env: &Env) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| build_c_harness(env)).clone()
}

fn build_c_harness(env: &Env) -> Result<PathBuf, String> {
    let out = env.work.join("c-harness");
    let (gen, _) = wyrm_toolchains::stage_c_sources(&out)
        .map_err(|e| format!("cannot stage the C helper: {e:#}"))?;
    let source = env.repo.join("fuzz/harness/wyrm_c.c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut key = Vec::new();
    for f in [
        source.clone(),
        gen.join("wyrm.c"),
        gen.join("wyrm.h"),
        gen.join("plugin.h"),
    ] {
        key.extend(std::fs::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?);
    }
    key.extend(cc.as_bytes());
    let exe = out.join(format!("wyrm_c-{:016x}", crate::engine::hash(&key)));
    if exe.is_file() {
        return Ok(exe);
    }
    let common = [
        "-std=c11",
        "-g",
        "-O1",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unused-parameter",
        "-fno-omit-frame-pointer",
    ];
    let sanitized = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"];
    let compile = |extra: &[&str]| -> Result<(), String> {
        let output = Command::new(&cc)
            .args(common)
            .args(extra)
            .arg("-I")
            .arg(&gen)
            .arg(&source)
            .arg(gen.join("wyrm.c"))
            .arg("-o")
            .arg(&exe)
            .output()
            .map_err(|e| {
                format!("cannot run {cc}: {e} (install a C compiler: scripts/setup-polyglot)")
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    match compile(&sanitized) {
        Ok(()) => Ok(exe),
        Err(first) => {
            eprintln!(
                "wyrm-fuzz: {cc} cannot build with AddressSanitizer/UBSan here; the C harness runs without them:\n{}",
                first.lines().take(3).collect::<Vec<_>>().join("\n")
            );
            compile(&[])
                .map(|()| exe)
                .map_err(|e| format!("cannot compile the C harness:\n{e}"))
        }
    }
}

// ---- talking to a harness ---------------------------------------------

struct Running {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<(u8, String)>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
}

struct Harness {
    spec: Spec,
    child: Option<Running>,
    timeout: Duration,
}

/// Keeps the last bytes a child wrote to stderr, for the finding.
const STDERR_KEEP: usize = 8 * 1024;

impl Harness {
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(&self.spec.program);
        cmd.args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.spec.program.display()))?;
        let (Some(stdin), Some(mut stdout), Some(mut err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("the harness's pipes are missing".into());
        };
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut head = [0u8; 5];
            while stdout.read_exact(&mut head).is_ok() {
                let n = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut msg = vec![0; n];
                if stdout.read_exact(&mut msg).is_err() {
                    break;
                }
                if tx
                    .send((head[0], String::from_utf8_lossy(&msg).into_owned()))
                    .is_err()
                {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut k) = keep.lock() {
                    k.extend(&buf[..n]);
                    let extra = k.len().saturating_sub(STDERR_KEEP);
                    k.drain(..extra);
                }
            }
        });
        self.child = Some(Running {
            child,
            stdin,
            replies,
            stderr,
        });
        Ok(())
    }

    /// Stops the child; returns how it ended and what it last said.
    fn reap(&mut self, kill: bool) -> String {
        let Some(mut r) = self.child.take() else {
            return String::new();
        };
        drop(r.stdin);
        if kill {
            let _ = r.child.kill();
        }
        let status = wait_briefly(&mut r.child);
        // Let the stderr reader take the last of it.
        std::thread::sleep(Duration::from_millis(50));
        let tail = r
            .stderr
            .lock()
            .map(|mut t| String::from_utf8_lossy(t.make_contiguous()).into_owned())
            .unwrap_or_default();
        format!("{status}; its stderr ends:\n{}", tail.trim_end())
    }
}

fn wait_briefly(child: &mut Child) -> String {
    for _ in 0..100 {
        match child.try_wait() {
            Ok(Some(s)) => return format!("it exited: {s}"),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return format!("cannot wait for it: {e}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    "it did not exit and was killed".into()
}

impl Runner for Harness {
    fn run(&mut self, input: &[u8]) -> Verdict {
        if self.child.is_none() {
            if let Err(e) = self.spawn() {
                return Verdict::Fail(e);
            }
        }
        let Some(r) = self.child.as_mut() else {
            return Verdict::Fail("no harness process".into());
        };
        let mut frame = Vec::with_capacity(4 + input.len());
        frame.extend_from_slice(&(input.len() as u32).to_le_bytes());
        frame.extend_from_slice(input);
        let sent = r.stdin.write_all(&frame).and_then(|()| r.stdin.flush());
        let reply = match sent {
            Ok(()) => r.replies.recv_timeout(self.timeout),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        match reply {
            Ok((0, _)) => Verdict::Accepted,
            Ok((1, _)) => Verdict::Rejected,
            Ok((_, msg)) => Verdict::Fail(format!("{}: {msg}", self.spec.lang)),
            Err(RecvTimeoutError::Timeout) => {
                let how = self.reap(true);
                Verdict::Fail(format!(
                    "the {} harness gave no answer within {:?} (a hang); {how}",
                    self.spec.lang, self.timeout
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let how = self.reap(false);
                Verdict::Fail(format!("the {} harness died: {how}", self.spec.lang))
            }
        }
    }

    /// Closes the harness's input, which ends it, and checks how it ended
    /// (a sanitizer reports leaks at exit).
    fn finish(&mut self) -> Option<String> {
        let mut r = self.child.take()?;
        drop(r.stdin);
        let status = r.child.wait();
        // Let the stderr reader take the last of it.
        std::thread::sleep(Duration::from_millis(50));
        match status {
            Ok(s) if s.success() => None,
            other => {
                let tail = r
                    .stderr
                    .lock()
                    .map(|mut t| String::from_utf8_lossy(t.make_contiguous()).into_owned())
                    .unwrap_or_default();
                Some(format!(
                    "the {} harness ended badly at the end of the run ({other:?}); its stderr ends:\n{}",
                    self.spec.lang,
                    tail.trim_end()
                ))
            }
        }
    }
}
