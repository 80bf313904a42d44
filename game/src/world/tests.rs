//! The world without WebAssembly: types declared by hand (as a plugin's
//! `init` would), the imports called as a plugin would call them, and what
//! the world hands the gate and the plugins read back.

use super::*;
use crate::entity_ids::EntityIds;
use crate::msg::{AttrAsk, GameInput, Inbox};
use wyrm_runtime::bindings::{AoiDecl, AttrDecl, EntityType, PluginInfo};
use wyrm_wire::{GameId, GateId};

/// A world of one game, with its storage, password pool and dispatcher.
struct Harness {
    world: World,
    /// Kept: the world's storage and inbox live as long as it does.
    _dir: tempfile::TempDir,
    _inbox: Inbox,
}

fn walker(name: &str, aoi: Option<AoiDecl>) -> EntityType {
    EntityType {
        name: name.into(),
        attrs: vec![AttrDecl {
            name: "name".into(),
            flags: AttrFlags::ALL_CLIENTS,
        }],
        methods: Vec::new(),
        aoi,
    }
}

fn harness() -> Harness {
    harness_with(false, |_| {})
}

/// [`harness`], whose checkpoints go to storage if `recoverable`, with
/// storage's answers to `answer`.
fn harness_with(
    recoverable: bool,
    answer: impl FnMut(wyrm_storage::Answer<Option<wyrm_dispatcher::Charge>>) + Send + 'static,
) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inbox, connections, internal) = wyrm_dispatcher::inbox::<GameInput>(64);
    let dispatcher = crate::msg::Dispatcher::new(vec![(connections, internal)]);
    let location = wyrm_storage::Location::Sqlite {
        path: dir.path().join("game.db"),
        durable: false,
    };
    let opened = wyrm_storage::open(&location, &[], answer).expect("storage opens");
    let (stats, _) = crate::StatsSink::open(&dir.path().join("stats.db")).expect("stats open");
    let ids = EntityIds::new(opened.ids.clone(), opened.store.clone());
    let passwords = PasswordPool::start(1, dispatcher.answers()).expect("password pool");
    let info = PluginInfo {
        name: "p".into(),
        version: "1".into(),
        entity_types: vec![
            walker("Plane", None),
            walker(
                "Walker",
                Some(AoiDecl {
                    radius: 10.0,
                    hysteresis: 1.0,
                    events: true,
                }),
            ),
            EntityType {
                name: "Vault".into(),
                attrs: vec![AttrDecl {
                    name: "value".into(),
                    flags: AttrFlags::PERSISTENT,
                }],
                methods: Vec::new(),
                aoi: None,
            },
        ],
    };
    let mut types = TypeRegistry::default();
    types.add_plugin(0, &info).expect("types");
    let spaces = Spaces::new(wyrm_protocol::Resolution::default(), HashMap::new());
    let mut world = World::new(
        types,
        spaces,
        passwords,
        Persistence::new(opened.store, stats, recoverable),
        dispatcher.for_game(GameId(0)),
        ids,
        GuestLimits::default(),
    );
    world.set_plugins(vec!["p".into()]);
    Harness {
        world,
        _dir: dir,
        _inbox: inbox,
    }
}

fn at(x: f32) -> Position {
    Position { x, y: 0.0, z: 0.0 }
}

/// The frames `client` was sent as changes of view since the last call.
fn views(world: &mut World, client: ClientId) -> Vec<ServerFrame> {
    let (out, _) = world.take_output();
    out.into_iter()
        .filter_map(|op| match op {
            ToGate::View { client: c, frame } if c == client => {
                Some(ServerFrame::decode(&frame).expect("a frame"))
            }
            _ => None,
        })
        .collect()
}

/// (watcher, other, entered) for every AOI event since the last call.
fn events(world: &mut World) -> Vec<(EntityId, EntityId, bool)> {
    let mut all: Vec<_> = world
        .take_aoi_events()
        .into_iter()
        .flat_map(|(_, evs)| evs)
        .map(|e| (e.watcher.id, e.other, e.entered))
        .collect();
    all.sort_unstable();
    all
}

#[test]
fn a_client_sees_what_its_entity_sees_and_logic_hears_of_it() {
    let mut h = harness();
    let w = &mut h.world;
    let client = ClientId::new(GateId(0), 1);
    let me = w.connect_client(client, "Walker").expect("boot entity");
    w.enter_plugin(0);
    let space = w
        .create_space("Plane", "field".into(), &[], Locality::Here)
        .expect("space");
    let near = w
        .create_entity(
            "Walker",
            &[0x81, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'n'],
            Locality::Here,
        )
        .expect("near");
    let far = w.create_entity("Walker", &[], Locality::Here).expect("far");
    for (id, x) in [(me, 0.0), (near, 5.0), (far, 50.0)] {
        w.enter_space(id, space, at(x), 0.0).expect("enters");
    }
    w.leave_plugin();
    views(w, client);
    events(w);

    // Its entity sees `near` (with the attributes clients may see), not
    // `far`; both walkers hear of each other.
    w.update_aoi();
    let seen = views(w, client);
    let created: Vec<_> = seen
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Create {
                entity, attrs, own, ..
            } => Some((*entity, attrs.clone(), *own)),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{seen:?}");
    let (entity, attrs, own) = &created[0];
    assert_eq!((*entity, *own), (near, false));
    let attrs = rmpv::decode::read_value(&mut attrs.as_slice()).expect("attrs");
    assert_eq!(attrs, Value::Map(vec![("name".into(), "n".into())]));
    assert_eq!(events(w), vec![(me, near, true), (near, me, true)]);
    assert_eq!(w.aoi_of(me), vec![near]);

    // Within the hysteresis it stays seen; past it, it goes.
    w.enter_plugin(0);
    w.set_position(near, at(10.5), 0.0).expect("moves");
    w.leave_plugin();
    w.update_aoi();
    assert_eq!(views(w, client), Vec::new());
    assert_eq!(events(w), Vec::new());
    w.enter_plugin(0);
    w.set_position(near, at(12.0), 0.0).expect("moves");
    w.leave_plugin();
    w.update_aoi();
    assert_eq!(
        views(w, client),
        vec![ServerFrame::Destroy { entity: near }]
    );
    assert_eq!(events(w), vec![(me, near, false), (near, me, false)]);
    assert!(w.aoi_of(me).is_empty());
}

#[test]
fn an_entity_asked_about_answers_for_its_own_plugin_only() {
    let mut h = harness();
    let w = &mut h.world;
    w.enter_plugin(0);
    let asker = w
        .create_entity("Walker", &[], Locality::Here)
        .expect("asker");
    let about = w
        .create_entity(
            "Walker",
            &[0x81, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'x'],
            Locality::Here,
        )
        .expect("about");
    w.leave_plugin();
    let reply = wyrm_wire::ReplyTo {
        entity: asker,
        method: "told".into(),
        context: vec![0xa1, b'c'],
    };
    let ask = |plugin, path: &str| AttrAsk {
        entity: about,
        path: vec![wyrm_protocol::PathSegment::Key(path.into())],
        reply: reply.clone(),
        plugin,
    };
    // Its own plugin: the value; another plugin (1): refused; a name it
    // does not declare: an error.
    w.take(GameInput::Ask {
        ask: ask(0, "name"),
        charge: None,
    });
    w.take(GameInput::Ask {
        ask: ask(1, "name"),
        charge: None,
    });
    w.take(GameInput::Ask {
        ask: ask(0, "nothing"),
        charge: None,
    });
    let mut answers = Vec::new();
    while let Some((_, work)) = w.work.pop() {
        if let Work::Call(call) = work {
            if call.entity == asker && call.method == "told" {
                let v = rmpv::decode::read_value(&mut call.args.as_slice()).expect("args");
                answers.push(v);
            }
        }
    }
    assert_eq!(answers.len(), 3);
    assert_eq!(
        answers[0],
        Value::Array(vec![Value::Nil, "x".into(), "c".into()])
    );
    for refused in &answers[1..] {
        let Value::Array(a) = refused else {
            panic!("{refused}")
        };
        assert!(a[0].is_str() && a[1].is_nil(), "{refused}");
    }
}

#[test]
fn a_recoverable_games_checkpoint_writes_the_changed_states_of_persistent_entities() {
    let (tx, answers) = std::sync::mpsc::channel();
    let mut h = harness_with(true, move |a| {
        if let wyrm_storage::Answer::Loaded { id, result } = a {
            let _ = tx.send((id, result.map(|l| l.state.map(|s| s.state))));
        }
    });
    let w = &mut h.world;
    w.enter_plugin(0);
    let vault = w
        .create_entity("Vault", &[0x80], Locality::Here)
        .expect("vault");
    let walker = w
        .create_entity("Walker", &[], Locality::Here)
        .expect("walker");
    w.leave_plugin();
    w.save_dirty();
    // What storage holds for `id` now (behind everything sent before).
    let stored = |w: &mut World, id: EntityId| {
        w.storage.store.send(Op::Recover { id });
        let (got, state) = answers
            .recv_timeout(Duration::from_secs(10))
            .expect("storage answers");
        assert_eq!(got, id);
        state
    };
    let states = |v: &[u8], wk: &[u8]| HashMap::from([(vault, v.to_vec()), (walker, wk.to_vec())]);

    w.store_checkpoint("1", &states(b"a", b"w"));
    assert_eq!(stored(w, vault), Ok(Some(b"a".to_vec())));
    // Not persistent: never saved, nothing to come back.
    assert!(stored(w, walker).is_err());
    // Unchanged: not written again (storage forgot it meanwhile, and
    // still has nothing); changed, or from another version: written.
    w.storage.store.send(Op::DropStates { ids: vec![vault] });
    w.store_checkpoint("1", &states(b"a", b"w"));
    assert_eq!(stored(w, vault), Ok(None));
    w.store_checkpoint("1", &states(b"b", b"w"));
    assert_eq!(stored(w, vault), Ok(Some(b"b".to_vec())));
    w.storage.store.send(Op::DropStates { ids: vec![vault] });
    w.store_checkpoint("2", &states(b"b", b"w"));
    assert_eq!(stored(w, vault), Ok(Some(b"b".to_vec())));
    // Destroyed: its state goes with it.
    w.remove_entity(vault);
    assert_eq!(stored(w, vault), Ok(None));
}
