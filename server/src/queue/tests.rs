use std::fs;

use super::*;
use crate::maildir::test_support::TempDir;

fn rcpts(list: &[&str]) -> Vec<(String, Option<String>)> {
    list.iter().map(|a| (a.to_string(), None)).collect()
}

fn queue_one(q: &Queue, id: &str, body: &[u8]) -> Meta {
    let mut w = q
        .begin(
            id,
            "alice@example.test",
            &[
                ("bob@remote.test".into(), None),
                ("carol@remote.test".into(), Some("team@example.test".into())),
            ],
            b"Received: by test\r\n",
            false,
        )
        .unwrap();
    for chunk in body.chunks(7) {
        w.write(chunk).unwrap();
    }
    w.commit().unwrap()
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn write_then_reload_after_restart() {
    let td = TempDir::new();
    let body = b"Subject: hi\r\n\r\nbody \xc3\xa9\r\n";
    let meta = {
        let q = Queue::open(td.path()).unwrap();
        queue_one(&q, "Q1", body)
    };
    assert_eq!(meta.size, 19 + body.len() as u64);
    assert!(meta.eight_bit);
    assert_eq!(meta.recipients.len(), 2);
    assert_eq!(
        meta.recipients[1].original.as_deref(),
        Some("team@example.test")
    );
    assert!(meta.recipients.iter().all(|r| r.status == Status::Pending));

    // A new process finds it as it was.
    let q = Queue::open(td.path()).unwrap();
    let found = q.recover().unwrap();
    assert_eq!(found.messages, vec![meta.clone()]);
    assert_eq!(found.removed, 0);
    let mut msg = Vec::new();
    q.open_message("Q1").unwrap().read_to_end(&mut msg).unwrap();
    assert_eq!(msg, [&b"Received: by test\r\n"[..], body].concat());
    assert_eq!(
        q.headers("Q1").unwrap(),
        b"Received: by test\r\nSubject: hi\r\n"
    );
    assert_eq!(files(&q.dir().join("tmp")), Vec::<String>::new());
}

#[test]
fn state_transitions_are_saved_atomically() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let mut meta = queue_one(&q, "Q2", b"x\r\n");
    meta.recipients[0].status = Status::Delivered;
    meta.recipients[0].last_reply = Some("250 2.0.0 Ok".into());
    meta.recipients[1].attempts = 1;
    meta.recipients[1].next_attempt_ms = 12345;
    meta.recipients[1].last_reply = Some("451 4.3.0 later".into());
    q.save(&meta).unwrap();
    assert_eq!(q.load("Q2").unwrap(), meta);
    assert_eq!(meta.next_due_ms(), Some(12345));

    meta.recipients[1].status = Status::Failed;
    q.save(&meta).unwrap();
    let reloaded = q.load("Q2").unwrap();
    assert!(reloaded.is_done());
    assert_eq!(reloaded.unreported().count(), 1);
    // Only the two files, nothing left in tmp/.
    assert_eq!(files(q.dir()), vec!["Q2.meta", "Q2.msg", "tmp"]);
    assert!(files(&q.dir().join("tmp")).is_empty());

    assert!(q.remove("Q2").unwrap());
    assert!(!q.contains("Q2"));
    assert!(!q.remove("Q2").unwrap());
    assert_eq!(files(q.dir()), vec!["tmp"]);
}

#[test]
fn save_after_delete_does_not_resurrect() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let meta = queue_one(&q, "Q3", b"x\r\n");
    q.remove("Q3").unwrap();
    let err = q.save(&meta).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(files(q.dir()), vec!["tmp"]);
}

#[test]
fn dropped_writer_leaves_nothing() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let mut w = q
        .begin("Q4", "a@b.test", &rcpts(&["x@y.test"]), b"", false)
        .unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    assert_eq!(files(q.dir()), vec!["tmp"]);
    assert!(files(&q.dir().join("tmp")).is_empty());
}

#[test]
fn begin_rejects_bad_input() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    assert!(matches!(
        q.begin("Q5", "a@b.test", &[], b"", false),
        Err(StoreError::NoRecipients)
    ));
    assert!(matches!(
        q.begin("../x", "a@b.test", &rcpts(&["x@y.test"]), b"", false),
        Err(StoreError::InvalidMailbox { .. })
    ));
    assert!(matches!(
        q.begin("Q5", "a@b.test", &rcpts(&["x@y.test>\r\nDATA"]), b"", false),
        Err(StoreError::InvalidAddress(_))
    ));
}

#[test]
fn recovery_cleans_unfinished_and_sets_aside_corrupt() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let good = queue_one(&q, "GOOD", b"good\r\n");
    queue_one(&q, "BAD", b"bad\r\n");
    queue_one(&q, "GONE", b"gone\r\n");
    let dir = q.dir().to_path_buf();
    // A crash mid-write: a tmp file, and a message whose metadata never landed.
    fs::write(dir.join("tmp").join("X.msg.1.1"), b"half").unwrap();
    fs::write(dir.join("ORPHAN.msg"), b"no meta").unwrap();
    // Metadata torn or edited into nonsense.
    fs::write(
        dir.join("BAD.meta"),
        b"version = 1\nid = \"BAD\"\nrecipients = [",
    )
    .unwrap();
    // `queue delete` removed the message but died before the metadata.
    fs::remove_file(dir.join("GONE.msg")).unwrap();
    drop(q);

    let q = Queue::open(td.path()).unwrap();
    let found = q.recover().unwrap();
    assert_eq!(found.messages, vec![good]);
    assert_eq!(found.corrupt, vec!["BAD".to_string()]);
    assert_eq!(found.removed, 3);
    assert_eq!(
        files(&dir),
        vec![
            "BAD.meta.corrupt",
            "BAD.msg",
            "GOOD.meta",
            "GOOD.msg",
            "tmp"
        ]
    );
    // Still listed, as unreadable, and never delivered.
    let listing = q.list().unwrap();
    assert_eq!(listing.messages.len(), 1);
    assert_eq!(listing.unreadable.len(), 1);
    assert_eq!(listing.unreadable[0].0, "BAD");
    // A second recovery changes nothing.
    let again = q.recover().unwrap();
    assert_eq!(again.removed, 0);
    assert_eq!(again.corrupt, Vec::<String>::new());
    // Deleting it removes the set-aside metadata too.
    assert!(q.remove("BAD").unwrap());
    assert_eq!(files(&dir), vec!["GOOD.meta", "GOOD.msg", "tmp"]);
}

#[test]
fn list_reports_unreadable_without_touching_it() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    queue_one(&q, "L1", b"x\r\n");
    fs::write(q.dir().join("L1.meta"), b"garbage").unwrap();
    let listing = q.list().unwrap();
    assert!(listing.messages.is_empty());
    assert_eq!(listing.unreadable[0].0, "L1");
    assert!(q.dir().join("L1.meta").exists());
}

#[test]
fn flush_marker() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    assert!(!q.take_flush_request());
    q.request_flush().unwrap();
    q.request_flush().unwrap();
    assert!(q.take_flush_request());
    assert!(!q.take_flush_request());
}

#[test]
fn enqueue_whole_message_and_headers() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let m = q
        .enqueue(
            "D1",
            "",
            &rcpts(&["alice@remote.test"]),
            b"A: 1\r\nB: 2\r\n\r\nbody\r\n",
        )
        .unwrap();
    assert_eq!(m.from, "");
    assert_eq!(q.headers("D1").unwrap(), b"A: 1\r\nB: 2\r\n");
    assert_eq!(header_section(b"\r\nbody"), b"");
    assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
}

#[test]
fn concurrent_saves_share_commits() {
    let td = TempDir::new();
    let q = Queue::open(td.path()).unwrap();
    let metas: Vec<Meta> = (0..16)
        .map(|i| queue_one(&q, &format!("C{i}"), b"x\r\n"))
        .collect();
    let threads: Vec<_> = metas
        .into_iter()
        .map(|mut m| {
            let q = q.clone();
            std::thread::spawn(move || {
                m.recipients[0].status = Status::Delivered;
                q.save(&m).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let listing = q.list().unwrap();
    assert_eq!(listing.messages.len(), 16);
    assert!(listing
        .messages
        .iter()
        .all(|m| m.recipients[0].status == Status::Delivered));
}
