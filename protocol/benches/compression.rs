//! What LZ4 does to the frames the examples send, and what it costs: for
//! each kind of frame, its size, the size of its `Compressed` frame (or
//! "sent as is" when that is not smaller, or it is under the threshold),
//! and the time to compress and to decompress it.
//!
//! The frames are the examples' own: the chatroom's history after a login
//! (50 lines), a chat line (short and at the 500-character limit), the
//! arena's `Create` of a player with its attributes, a tracer call, and a
//! `Positions` frame for 40 moving entities.
//!
//! Run: `cargo bench -p wyrm-protocol --bench compression`

use std::time::Instant;

use rmpv::Value;
use wyrm_protocol::{compress_frame, decompress_frame, ServerFrame, COMPRESS_MIN};

fn msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

fn words(seed: u64, n: usize) -> String {
    const W: [&str; 16] = [
        "the", "wyrm", "arena", "lobby", "hello", "anyone", "up", "for", "a", "round", "gg",
        "nice", "shot", "where", "is", "everyone",
    ];
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            W[(x >> 60) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let history = Value::Array(vec![
        Value::from("lobby"),
        Value::Array(
            (0..50)
                .map(|i| {
                    Value::Array(vec![
                        Value::from(format!("player{}", i % 7)),
                        Value::from(words(i, 8 + (i as usize % 12))),
                    ])
                })
                .collect(),
        ),
    ]);
    let chat = |text: String| ServerFrame::CallOwn {
        method: "on_chat".into(),
        args: msgpack(&Value::Array(vec![
            Value::from("player3"),
            Value::from("lobby"),
            Value::from(text),
        ])),
    };
    let player = Value::Map(
        [
            ("name", Value::from("ann")),
            ("hp", Value::from(100)),
            ("max_hp", Value::from(100)),
            ("level", Value::from(3)),
            ("kills", Value::from(12)),
            ("dead", Value::from(false)),
        ]
        .into_iter()
        .map(|(k, v)| (Value::from(k), v))
        .collect(),
    );
    // A tick's Positions for 40 movers a client already sees (updates).
    let mut positions = Vec::new();
    let res = wyrm_protocol::Resolution::from_exp(-5).unwrap_or_else(|| unreachable!());
    let mut w = wyrm_protocol::PositionsWriter::new(&mut positions, res);
    for slot in 0..40u32 {
        let at = |t: i32| wyrm_protocol::QuantPos {
            x: 3200 + slot as i32 * 97 + t * (slot as i32 % 5 - 2) * 11,
            y: 1800 - slot as i32 * 31 + t * 7,
            z: 0,
            yaw: ((slot * 25 + t as u32) % 1024) as u16,
        };
        w.update(slot, at(0), at(1));
    }
    w.finish();
    vec![
        (
            "chat history (50 lines)",
            ServerFrame::CallOwn {
                method: "on_history".into(),
                args: msgpack(&history),
            }
            .to_bytes(),
        ),
        (
            "chat line, 500 characters",
            chat(words(7, 110).chars().take(500).collect()).to_bytes(),
        ),
        (
            "chat line, 60 characters",
            chat(words(9, 12).chars().take(60).collect()).to_bytes(),
        ),
        (
            "arena Create of a player",
            ServerFrame::Create {
                entity: 4_294_967_311,
                type_name: "Player".into(),
                own: false,
                attrs: msgpack(&player),
            }
            .to_bytes(),
        ),
        (
            "arena tracer call",
            ServerFrame::Call {
                entity: 4_294_967_311,
                method: "shot".into(),
                args: msgpack(&Value::Array(vec![
                    Value::from(1013.25),
                    Value::from(977.5),
                    Value::from(1560.0),
                    Value::from(1102.75),
                ])),
            }
            .to_bytes(),
        ),
        ("Positions, 40 movers", positions.clone()),
    ]
}

fn main() {
    const ROUNDS: u32 = 20_000;
    println!(
        "{:28} {:>7} {:>10} {:>7} {:>12} {:>12}",
        "frame", "bytes", "compressed", "ratio", "compress", "decompress"
    );
    for (name, frame) in frames() {
        let packed = (frame.len() >= COMPRESS_MIN as usize)
            .then(|| compress_frame(&frame))
            .flatten();
        let t = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(compress_frame(std::hint::black_box(&frame)));
        }
        let compress_ns = t.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
        match packed {
            Some(p) => {
                let t = Instant::now();
                for _ in 0..ROUNDS {
                    let out = decompress_frame(1, frame.len() as u32, &p[6..], 1 << 20);
                    std::hint::black_box(out.ok());
                }
                let decompress_ns = t.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
                println!(
                    "{name:28} {:>7} {:>10} {:>6.2}x {:>9.2} us {:>9.2} us",
                    frame.len(),
                    p.len(),
                    frame.len() as f64 / p.len() as f64,
                    compress_ns / 1e3,
                    decompress_ns / 1e3
                );
            }
            None => println!(
                "{name:28} {:>7} {:>10} {:>7} {:>9.2} us {:>12}",
                frame.len(),
                "as is",
                "-",
                compress_ns / 1e3,
                "-"
            ),
        }
    }
}
