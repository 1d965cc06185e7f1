//! Store-level tests: UIDs across restarts and crashes, flags, expunge, append, copy/move,
//! folders, isolation, notifications.

use super::*;
use crate::maildir::test_support::TempDir;
use crate::maildir::{Recipient, Store};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const D: &str = "example.org";

fn store(td: &TempDir) -> MailStore {
    MailStore::open(td.path(), "mx.example.org").unwrap()
}

/// Delivers through the SMTP path (maildir::Store), like a real message.
fn deliver(td: &TempDir, local: &str, body: &str) -> std::path::PathBuf {
    let smtp = Store::open(td.path(), "mx.example.org").unwrap();
    let mut w = smtp
        .begin(
            "sender@example.com",
            vec![Recipient {
                domain: D.into(),
                local: local.into(),
                delivered_to: format!("{local}@{D}"),
            }],
            b"",
        )
        .unwrap();
    w.write(body.as_bytes()).unwrap();
    w.commit().unwrap().remove(0)
}

fn uids(view: &MailboxView) -> Vec<u32> {
    view.messages().iter().map(|m| m.uid).collect()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn read_all(mut f: fs::File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn uids_survive_a_restart_and_new_mail_gets_higher_ones() {
    let td = TempDir::new();
    for i in 0..3 {
        deliver(&td, "alice", &format!("Subject: {i}\r\n\r\nbody {i}\r\n"));
    }
    let (validity, first) = {
        let s = store(&td);
        let acct = s.account(D, "alice").unwrap();
        let view = acct.select("INBOX").unwrap();
        assert_eq!(uids(&view), [1, 2, 3]);
        assert_eq!(view.uidnext(), 4);
        assert_eq!(view.recent(), 3);
        // Moved from new/ to cur/ with the flags suffix, as Dovecot does.
        let root = acct.root().to_owned();
        assert!(files(&root.join("new")).is_empty());
        assert!(files(&root.join("cur")).iter().all(|f| f.ends_with(":2,")));
        let first = read_all(view.open_message(1).unwrap());
        (view.uidvalidity(), first)
    };
    // "Restart": a new store and registry.
    let s = store(&td);
    let acct = s.account(D, "alice").unwrap();
    let view = acct.select("inbox").unwrap();
    assert_eq!(view.name(), "INBOX");
    assert_eq!(view.uidvalidity(), validity);
    assert_eq!(uids(&view), [1, 2, 3]);
    assert_eq!(view.recent(), 0, "seen by the earlier session");
    assert_eq!(read_all(view.open_message(1).unwrap()), first);
    drop(view);
    deliver(&td, "alice", "Subject: 4\r\n\r\n4\r\n");
    deliver(&td, "alice", "Subject: 5\r\n\r\n5\r\n");
    let view = acct.select("INBOX").unwrap();
    assert_eq!(uids(&view), [1, 2, 3, 4, 5]);
    assert_eq!(view.recent(), 2);
    let index = fs::read_to_string(acct.root().join("dovecot-uidlist")).unwrap();
    assert!(index.starts_with(&format!("3 V{validity} N6 G")), "{index}");
    assert_eq!(index.lines().count(), 6);
}

#[test]
fn files_from_other_programs_are_picked_up_in_order() {
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "bob").unwrap();
    let mut view = acct.select("INBOX").unwrap();
    assert_eq!(view.exists(), 0);
    let root = acct.root().to_owned();
    // Another MDA drops files into new/ and cur/ (older mtime first gets the lower UID).
    fs::write(root.join("cur/2000.other:2,FS"), b"older\r\n").unwrap();
    fs::File::options()
        .write(true)
        .open(root.join("cur/2000.other:2,FS"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(2000))
        .unwrap();
    fs::write(root.join("new/3000.other"), b"newer\r\n").unwrap();
    let changes = view.refresh(true).unwrap();
    assert_eq!(changes.exists, Some(2));
    assert_eq!(changes.recent, Some(2));
    assert_eq!(uids(&view), [1, 2]);
    let m = view.message(1).unwrap();
    assert_eq!(m.flags, SystemFlags::FLAGGED.union(SystemFlags::SEEN));
    assert_eq!(m.internal_date, 2000);
    assert_eq!(m.size, 7);
    assert_eq!(view.first_unseen(), Some(2));
    assert_eq!(view.unseen(), 1);
    assert!(files(&root.join("cur")).contains(&"3000.other:2,".to_owned()));
    assert!(view.refresh(true).unwrap().is_empty());
}

#[test]
fn crash_leftovers_and_a_stale_index_are_handled() {
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "carol").unwrap();
    let root = acct.root().to_owned();
    drop(s);
    // An index from before a crash: lists a (uid 5) and b (uid 9, since expunged), its N is
    // behind, its last line was cut short; c was delivered after it was written; and the
    // writer's lock file was left behind.
    fs::write(root.join("cur/1.a,S=2:2,S"), b"a\n").unwrap();
    fs::write(root.join("cur/3.c:2,"), b"c\n").unwrap();
    fs::write(
        root.join("dovecot-uidlist"),
        "3 V42 N7 G0123456789abcdef0123456789abcdef\n5 :1.a,S=2:2,\n9 W3 :2.b:2,\n12 :3.c",
    )
    .unwrap();
    let lock = root.join("dovecot-uidlist.lock");
    fs::write(&lock, b"3 V42 N13 G0123").unwrap();
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    // A temp file of an interrupted deletion.
    fs::create_dir_all(root.join("ironpost-deleted.x/cur")).unwrap();

    let s = store(&td);
    let acct = s.account(D, "carol").unwrap();
    assert!(!root.join("ironpost-deleted.x").exists());
    let view = acct.select("INBOX").unwrap();
    assert_eq!(view.uidvalidity(), 42);
    assert_eq!(
        uids(&view),
        [5, 10],
        "a keeps 5; c gets a UID above every one ever listed"
    );
    assert_eq!(
        view.message(1).unwrap().flags,
        SystemFlags::SEEN,
        "flags come from the file, not the index's stale name"
    );
    assert!(!lock.exists());
    let index = fs::read_to_string(root.join("dovecot-uidlist")).unwrap();
    assert!(
        index.starts_with("3 V42 N11 G0123456789abcdef0123456789abcdef\n"),
        "{index}"
    );
    assert!(
        index.contains("\n5 :1.a,S=2:2,S\n") && index.contains("\n10 :3.c:2,\n"),
        "{index}"
    );
    assert!(!index.contains("2.b"));

    // A damaged index: a new UIDVALIDITY and fresh UIDs, never a reuse under the old one.
    drop(view);
    drop(acct);
    drop(s);
    fs::write(root.join("dovecot-uidlist"), "garbage\n").unwrap();
    let s = store(&td);
    let view = s.account(D, "carol").unwrap().select("INBOX").unwrap();
    assert_ne!(view.uidvalidity(), 42);
    assert_eq!(uids(&view), [1, 2]);
}

#[test]
fn flags_and_keywords_round_trip_through_file_names() {
    let td = TempDir::new();
    deliver(&td, "dave", "x\r\n");
    deliver(&td, "dave", "y\r\n");
    let s = store(&td);
    let acct = s.account(D, "dave").unwrap();
    let mut view = acct.select("INBOX").unwrap();
    let out = view
        .store(
            &[1, 2, 99],
            StoreOp::Add,
            SystemFlags::SEEN.union(SystemFlags::ANSWERED),
            &["$Junk"],
        )
        .unwrap();
    assert_eq!(out.messages, [1, 2]);
    assert!(out.keywords);
    assert_eq!(view.keywords(), ["$Junk"]);
    let out = view
        .store(
            &[2],
            StoreOp::Replace,
            SystemFlags::DRAFT.union(SystemFlags::DELETED),
            &["$label1", "$Junk"],
        )
        .unwrap();
    assert_eq!(out.messages, [2]);
    view.store(
        &[1],
        StoreOp::Remove,
        SystemFlags::ANSWERED,
        &["nonexistent"],
    )
    .unwrap();
    let root = acct.root().to_owned();
    let names = files(&root.join("cur"));
    // Found by content: names of one second's deliveries need not sort in delivery order.
    let named = |body: &str| {
        names
            .iter()
            .find(|n| {
                fs::read_to_string(root.join("cur").join(n))
                    .unwrap()
                    .ends_with(body)
            })
            .unwrap_or_else(|| panic!("no file with body {body:?} in {names:?}"))
    };
    assert!(named("x\r\n").ends_with(":2,Sa"), "{names:?}");
    assert!(named("y\r\n").ends_with(":2,DTab"), "{names:?}");
    assert_eq!(
        fs::read_to_string(root.join("dovecot-keywords")).unwrap(),
        "0 $Junk\n1 $label1\n"
    );
    assert!(
        view.refresh(true).unwrap().is_empty(),
        "own changes are not reported back"
    );
    assert!(matches!(
        view.store(&[1], StoreOp::Add, SystemFlags::empty(), &["bad keyword"]),
        Err(MailstoreError::InvalidKeyword(_))
    ));
    drop(view);
    drop(acct);
    drop(s);
    let s = store(&td);
    let view = s.account(D, "dave").unwrap().select("INBOX").unwrap();
    let m2 = view.message(2).unwrap();
    assert_eq!(m2.flags, SystemFlags::DRAFT.union(SystemFlags::DELETED));
    assert_eq!(view.keyword_names(m2.keywords), ["$Junk", "$label1"]);
    assert_eq!(view.message(1).unwrap().flags, SystemFlags::SEEN);
    assert!(view.can_create_keywords());
}

#[test]
fn keywords_are_limited_to_26() {
    let td = TempDir::new();
    deliver(&td, "kw", "x\r\n");
    let s = store(&td);
    let mut view = s.account(D, "kw").unwrap().select("INBOX").unwrap();
    let names: Vec<String> = (0..26).map(|i| format!("k{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    view.store(&[1], StoreOp::Add, SystemFlags::empty(), &names)
        .unwrap();
    assert!(!view.can_create_keywords());
    let err = view
        .store(&[1], StoreOp::Add, SystemFlags::empty(), &["k26"])
        .unwrap_err();
    assert!(matches!(err, MailstoreError::TooManyKeywords { max: 26 }));
    assert_eq!(err.response_code(), "LIMIT");
    assert_eq!(
        view.keyword_names(view.message(1).unwrap().keywords).len(),
        26
    );
}

#[test]
fn expunge_removes_only_deleted_messages() {
    let td = TempDir::new();
    for i in 0..4 {
        deliver(&td, "erin", &format!("{i}\r\n"));
    }
    let s = store(&td);
    let acct = s.account(D, "erin").unwrap();
    let mut view = acct.select("INBOX").unwrap();
    view.store(&[1, 2, 4], StoreOp::Add, SystemFlags::DELETED, &[])
        .unwrap();
    // UID EXPUNGE limited to 2 and 3: only 2 qualifies.
    assert_eq!(view.expunge(Some(&[2, 3])).unwrap(), [2]);
    let changes = view.refresh(true).unwrap();
    assert_eq!(changes.expunged, [2]);
    assert_eq!(uids(&view), [1, 3, 4]);
    assert_eq!(view.expunge(None).unwrap(), [1, 4]);
    let changes = view.refresh(true).unwrap();
    assert_eq!(changes.expunged, [3, 1], "highest first");
    assert_eq!(uids(&view), [3]);
    assert_eq!(files(&acct.root().join("cur")).len(), 1);
    assert!(matches!(
        view.open_message(1),
        Err(MailstoreError::Expunged { uid: 1 })
    ));
    drop(view);
    let s = store(&td);
    let view = s.account(D, "erin").unwrap().select("INBOX").unwrap();
    assert_eq!(uids(&view), [3]);
    assert_eq!(view.uidnext(), 5, "expunged UIDs are never reused");
    let examine = s.account(D, "erin").unwrap().examine("INBOX").unwrap();
    let mut examine = examine;
    assert!(matches!(
        examine.expunge(None),
        Err(MailstoreError::ReadOnly)
    ));
    assert!(matches!(
        examine.store(&[3], StoreOp::Add, SystemFlags::SEEN, &[]),
        Err(MailstoreError::ReadOnly)
    ));
}

#[test]
fn append_streams_with_flags_and_date() {
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "frank").unwrap();
    let date = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let body = "Subject: appended\r\n\r\n".to_owned() + &"line\r\n".repeat(50_000);
    let mut w = acct.append("Drafts").unwrap();
    for chunk in body.as_bytes().chunks(7919) {
        w.write(chunk).unwrap();
    }
    assert_eq!(w.len(), body.len() as u64);
    let a = w
        .commit(
            SystemFlags::DRAFT.union(SystemFlags::SEEN),
            &["$Label2"],
            Some(date),
        )
        .unwrap();
    assert_eq!(a.uid, 1);
    let a2 = acct
        .append_from(
            "Drafts",
            &mut &b"second\r\n"[..],
            SystemFlags::empty(),
            &[],
            None,
        )
        .unwrap();
    assert_eq!((a2.uidvalidity, a2.uid), (a.uidvalidity, 2));

    let drafts = acct.mailbox_path("Drafts").unwrap();
    assert!(files(&drafts.join("tmp")).is_empty());
    let names = files(&drafts.join("cur"));
    assert_eq!(names.len(), 2);
    let first = names
        .iter()
        .find(|n| n.ends_with(":2,DSa"))
        .expect("flags in the name");
    assert!(first.contains(&format!(",S={}:", body.len())), "{first}");
    assert_eq!(
        fs::metadata(drafts.join("cur").join(first))
            .unwrap()
            .mtime(),
        1_500_000_000
    );
    let view = acct.select("Drafts").unwrap();
    assert_eq!(view.uidvalidity(), a.uidvalidity);
    let m = view.message(1).unwrap();
    assert_eq!(
        (m.uid, m.size, m.internal_date),
        (1, body.len() as u64, 1_500_000_000)
    );
    assert_eq!(view.keyword_names(m.keywords), ["$Label2"]);
    assert_eq!(read_all(view.open_message(1).unwrap()), body);
    // An abandoned append leaves nothing.
    let mut w = acct.append("Drafts").unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    assert!(files(&drafts.join("tmp")).is_empty());
    assert!(matches!(
        acct.append("Nope"),
        Err(MailstoreError::NoSuchMailbox(n)) if n == "Nope"
    ));
}

#[test]
fn copy_and_move_map_uids() {
    let td = TempDir::new();
    for i in 0..3 {
        deliver(&td, "gina", &format!("{i}\r\n"));
    }
    let s = store(&td);
    let acct = s.account(D, "gina").unwrap();
    let mut inbox = acct.select("INBOX").unwrap();
    inbox
        .store(&[2], StoreOp::Add, SystemFlags::FLAGGED, &["$Work"])
        .unwrap();
    let c = inbox.copy(&[3, 2, 77], "Trash").unwrap();
    assert_eq!(c.uids, [(2, 1), (3, 2)]);
    assert_eq!(c.uidvalidity, acct.status("Trash").unwrap().uidvalidity);
    let trash = acct.select("Trash").unwrap();
    let m = trash.message(1).unwrap();
    assert_eq!(m.flags, SystemFlags::FLAGGED);
    assert_eq!(trash.keyword_names(m.keywords), ["$Work"]);
    assert!(m.recent);
    assert_eq!(
        read_all(trash.open_message(2).unwrap()),
        read_all(inbox.open_message(3).unwrap())
    );
    // Hard links: the copy shares the original's inode (and so its INTERNALDATE).
    let ino = |v: &MailboxView, uid| {
        let f = v.open_message(uid).unwrap();
        f.metadata().unwrap().ino()
    };
    assert_eq!(ino(&trash, 1), ino(&inbox, 2));
    assert_eq!(
        trash.message(1).unwrap().internal_date,
        inbox.message(2).unwrap().internal_date
    );

    let m = inbox.move_to(&[1, 3], "Archive").err().unwrap();
    assert!(matches!(m, MailstoreError::NoSuchMailbox(_)));
    acct.create("Archive").unwrap();
    let moved = inbox.move_to(&[1, 3], "Archive").unwrap();
    assert_eq!(moved.uids, [(1, 1), (3, 2)]);
    let changes = inbox.refresh(true).unwrap();
    assert_eq!(changes.expunged, [3, 1]);
    assert_eq!(uids(&inbox), [2]);
    assert_eq!(acct.status("Archive").unwrap().messages, 2);
    // Copy into the same mailbox makes a new UID.
    let c = inbox.copy(&[2], "INBOX").unwrap();
    assert_eq!(c.uids, [(2, 4)]);
    assert_eq!(inbox.refresh(true).unwrap().exists, Some(2));
}

#[test]
fn folders_create_rename_delete_with_hierarchy() {
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "hal").unwrap();
    acct.create("Projects.").unwrap(); // trailing delimiter dropped
    acct.create("Projects.2024").unwrap();
    acct.create("Projects.2024.Q1").unwrap();
    acct.create("Entw\u{fc}rfe").unwrap();
    assert!(acct.root().join(".Projects.2024.Q1/cur").is_dir());
    assert!(acct.root().join(".Projects.2024/maildirfolder").is_file());
    assert!(acct.root().join(".Entw&APw-rfe/new").is_dir());
    assert!(
        matches!(acct.create("projects.2024"), Ok(())),
        "names are case-sensitive"
    );
    assert!(matches!(
        acct.create("Projects"),
        Err(MailstoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        acct.create("inbox"),
        Err(MailstoreError::AlreadyExists(_))
    ));
    acct.subscribe("Projects.2024").unwrap();
    acct.append_from(
        "Projects.2024",
        &mut &b"m\r\n"[..],
        SystemFlags::empty(),
        &[],
        None,
    )
    .unwrap();
    let mut watching = acct.select("Projects.2024").unwrap();

    // Rename a parent: the children come along, with their subscriptions.
    acct.rename("Projects", "Work.Old").unwrap();
    assert!(matches!(
        watching.refresh(true),
        Err(MailstoreError::MailboxGone)
    ));
    let names: Vec<String> = acct.list().unwrap().into_iter().map(|i| i.name).collect();
    for n in [
        "Work",
        "Work.Old",
        "Work.Old.2024",
        "Work.Old.2024.Q1",
        "projects.2024",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("Projects")),
        "{names:?}"
    );
    assert!(acct.subscriptions().unwrap().contains("Work.Old.2024"));
    assert_eq!(acct.status("Work.Old.2024").unwrap().messages, 1);
    assert!(matches!(
        acct.rename("Work.Old", "Work.Old.Inside"),
        Err(MailstoreError::RenameIntoItself { .. })
    ));
    assert!(matches!(
        acct.rename("Nope", "X"),
        Err(MailstoreError::NoSuchMailbox(_))
    ));
    assert!(matches!(
        acct.rename("Sent", "Trash"),
        Err(MailstoreError::AlreadyExists(_))
    ));

    // Delete a parent with children: it becomes \Noselect; then it cannot be deleted again.
    acct.delete("Work.Old").unwrap();
    let info = acct
        .list()
        .unwrap()
        .into_iter()
        .find(|i| i.name == "Work.Old")
        .unwrap();
    assert!(info.noselect && info.has_children);
    assert_eq!(info.attributes(), ["\\Noselect", "\\HasChildren"]);
    assert!(matches!(
        acct.delete("Work.Old"),
        Err(MailstoreError::HasChildren(_))
    ));
    assert!(matches!(
        acct.select("Work.Old"),
        Err(MailstoreError::NoSuchMailbox(_))
    ));
    acct.delete("Work.Old.2024.Q1").unwrap();
    acct.delete("Work.Old.2024").unwrap();
    assert!(!acct
        .list()
        .unwrap()
        .iter()
        .any(|i| i.name.starts_with("Work")));
    assert!(matches!(
        acct.delete("INBOX"),
        Err(MailstoreError::CannotDeleteInbox)
    ));
    assert!(matches!(
        acct.delete("Work"),
        Err(MailstoreError::NoSuchMailbox(_))
    ));
    // Subscriptions stay after a delete (RFC 3501 6.3.9).
    assert!(acct.subscriptions().unwrap().contains("Work.Old.2024"));

    // Re-created under an old name: a new UIDVALIDITY.
    acct.create("Again").unwrap();
    let v1 = acct.status("Again").unwrap().uidvalidity;
    acct.delete("Again").unwrap();
    acct.create("Again").unwrap();
    assert_ne!(acct.status("Again").unwrap().uidvalidity, v1);
}

#[test]
fn renaming_inbox_moves_its_messages() {
    let td = TempDir::new();
    deliver(&td, "ivy", "1\r\n");
    deliver(&td, "ivy", "2\r\n");
    let s = store(&td);
    let acct = s.account(D, "ivy").unwrap();
    acct.create("INBOX.Child").unwrap();
    let mut inbox = acct.select("INBOX").unwrap();
    acct.rename("INBOX", "Old Mail").unwrap();
    assert_eq!(inbox.refresh(true).unwrap().expunged, [2, 1]);
    assert_eq!(acct.status("INBOX").unwrap().messages, 0);
    assert_eq!(acct.status("Old Mail").unwrap().messages, 2);
    assert!(acct.status("INBOX.Child").is_ok());
    deliver(&td, "ivy", "3\r\n");
    assert_eq!(inbox.refresh(true).unwrap().exists, Some(1));
    assert_eq!(uids(&inbox), [3], "INBOX keeps counting");
}

#[test]
fn names_that_escape_are_rejected_and_accounts_are_isolated() {
    let td = TempDir::new();
    deliver(&td, "victim", "secret\r\n");
    let s = store(&td);
    let acct = s.account(D, "mallory").unwrap();
    for bad in [
        "../victim",
        "..",
        ".",
        "a/../../victim",
        "/etc",
        "..victim",
        ".hidden",
        "a..b",
        "x\0y",
        "x\ry",
        "*",
        "a%",
        "",
        &"n".repeat(300),
    ] {
        for result in [
            acct.create(bad).map(|_| ()),
            acct.select(bad).map(|_| ()),
            acct.status(bad).map(|_| ()),
            acct.delete(bad).map(|_| ()),
            acct.rename("Sent", bad).map(|_| ()),
            acct.rename(bad, "X").map(|_| ()),
            acct.subscribe(bad).map(|_| ()),
            acct.append(bad).map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, MailstoreError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
            assert_eq!(err.response_code(), "CANNOT");
        }
    }
    let mut inbox = acct.select("INBOX").unwrap();
    assert_eq!(inbox.exists(), 0);
    assert!(inbox.copy(&[1], "../victim").is_err());
    assert!(matches!(
        inbox.move_to(&[1], "../../x"),
        Err(MailstoreError::InvalidName { .. })
    ));
    // Nothing was created outside mallory's directory.
    assert_eq!(
        files(&td.path().join("mail").join(D)),
        ["mallory", "victim"]
    );
    let victim = td.path().join("mail").join(D).join("victim");
    assert_eq!(files(&victim), ["cur", "new", "tmp"]);
    // Bad account names.
    for (d, l) in [("..", "x"), (D, ".."), (D, "a/b"), (D, ""), ("", "x")] {
        assert!(matches!(
            s.account(d, l),
            Err(MailstoreError::InvalidAccount { .. })
        ));
    }
    // The same folder name in two accounts is two mailboxes.
    let other = s.account(D, "victim").unwrap();
    acct.append_from(
        "Sent",
        &mut &b"mine\r\n"[..],
        SystemFlags::empty(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(other.status("Sent").unwrap().messages, 0);
    assert_eq!(other.status("INBOX").unwrap().messages, 1);
}

#[test]
fn special_use_folders_are_created_subscribed_and_listed() {
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "jo").unwrap();
    let root = acct.root().to_owned();
    for d in [".Sent", ".Drafts", ".Trash", ".Junk"] {
        assert!(root.join(d).join("cur").is_dir(), "{d}");
    }
    assert_eq!(
        fs::read_to_string(root.join("subscriptions")).unwrap(),
        "V\t2\n\nDrafts\nJunk\nSent\nTrash\n"
    );
    let list = acct.list().unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["INBOX", "Drafts", "Junk", "Sent", "Trash"]);
    let sent = &list[3];
    assert_eq!(sent.special_use, Some(SpecialUse::Sent));
    assert!(sent.subscribed);
    assert_eq!(sent.attributes(), ["\\HasNoChildren", "\\Sent"]);
    assert_eq!(list[0].attributes(), ["\\HasNoChildren"]);
    // A user's unsubscribe and delete stick until the folder is missing at the next login.
    assert!(acct.unsubscribe("Junk").unwrap());
    assert!(!acct.unsubscribe("Junk").unwrap());
    acct.delete("Trash").unwrap();
    let acct = s.account(D, "jo").unwrap();
    assert!(!acct.subscriptions().unwrap().contains("Junk"));
    assert!(acct.subscriptions().unwrap().contains("Trash"));
    assert!(root.join(".Trash").is_dir());
    // LSUB of a name that does not exist.
    assert!(acct.subscribe("Ghost.Child").unwrap());
    let ghost = acct
        .list_subscribed()
        .unwrap()
        .into_iter()
        .find(|i| i.name == "Ghost.Child")
        .unwrap();
    assert!(ghost.nonexistent && ghost.noselect);
    assert!(pattern_matches("*", "Ghost.Child") && !pattern_matches("%", "Ghost.Child"));
}

#[test]
fn status_counts_without_selecting() {
    let td = TempDir::new();
    for i in 0..3 {
        deliver(&td, "kim", &format!("{i}\r\n"));
    }
    let s = store(&td);
    let acct = s.account(D, "kim").unwrap();
    let st = acct.status("INBOX").unwrap();
    assert_eq!(
        (st.messages, st.recent, st.unseen, st.uidnext),
        (3, 3, 3, 4)
    );
    // EXAMINE shows \Recent without taking it.
    assert_eq!(acct.examine("INBOX").unwrap().recent(), 3);
    assert_eq!(acct.status("INBOX").unwrap().recent, 3);
    let mut view = acct.select("INBOX").unwrap();
    assert_eq!(view.recent(), 3);
    view.store(&[1], StoreOp::Add, SystemFlags::SEEN, &[])
        .unwrap();
    let st = acct.status("INBOX").unwrap();
    assert_eq!(
        (st.messages, st.recent, st.unseen),
        (3, 0, 2),
        "recent claimed by SELECT"
    );
    assert_eq!(st.uidvalidity, view.uidvalidity());
    // A second SELECT does not see them as recent.
    assert_eq!(acct.select("INBOX").unwrap().recent(), 0);
    assert!(matches!(
        acct.status("Nope"),
        Err(MailstoreError::NoSuchMailbox(_))
    ));
}

#[test]
fn two_sessions_see_each_others_changes_and_get_woken() {
    let td = TempDir::new();
    for i in 0..3 {
        deliver(&td, "lee", &format!("{i}\r\n"));
    }
    let s = store(&td);
    let acct = s.account(D, "lee").unwrap();
    let mut a = acct.select("INBOX").unwrap();
    let mut b = acct.select("INBOX").unwrap();
    let woken = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&woken);
    b.set_waker(Box::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    }));
    assert!(!b.has_changes());

    // Flags set by A: B is woken and gets FETCH FLAGS.
    a.store(&[2], StoreOp::Add, SystemFlags::SEEN, &["$Junk"])
        .unwrap();
    assert!(woken.load(Ordering::SeqCst) >= 1);
    assert!(b.has_changes());
    let ch = b.refresh(true).unwrap();
    assert_eq!(ch.flags, [2]);
    assert!(ch.keywords);
    assert_eq!(b.message(2).unwrap().flags, SystemFlags::SEEN);
    assert!(!b.has_changes());

    // Expunge by A while B may not be told (e.g. during FETCH): B keeps the sequence.
    a.store(&[1], StoreOp::Add, SystemFlags::DELETED, &[])
        .unwrap();
    a.expunge(None).unwrap();
    let ch = b.refresh(false).unwrap();
    assert!(ch.expunged.is_empty() && ch.flags.is_empty());
    assert_eq!(b.exists(), 3);
    assert!(b.message(1).unwrap().expunged);
    assert!(matches!(
        b.open_message(1),
        Err(MailstoreError::Expunged { uid: 1 })
    ));
    let ch = b.refresh(true).unwrap();
    assert_eq!(ch.expunged, [1]);
    assert_eq!(uids(&b), [2, 3]);

    // A delivery over SMTP: the delivery path notifies the registry; B is woken and sees
    // EXISTS with the message \Recent for exactly one of the sessions.
    let before = woken.load(Ordering::SeqCst);
    let path = deliver(&td, "lee", "new\r\n");
    s.registry().notify_delivered(&path);
    assert!(woken.load(Ordering::SeqCst) > before);
    let ch = b.refresh(true).unwrap();
    assert_eq!((ch.exists, ch.recent), (Some(3), Some(1)));
    assert_eq!(b.message(3).unwrap().uid, 4);
    let ch = a.refresh(true).unwrap();
    assert_eq!(ch.expunged, [1]);
    assert_eq!(
        (ch.exists, ch.recent),
        (Some(3), Some(2)),
        "2 and 3 stay recent for A"
    );
    assert!(!a.message(3).unwrap().recent, "4 went to B");

    // After the view is dropped its waker is gone.
    drop(b);
    let n = woken.load(Ordering::SeqCst);
    a.store(&[4], StoreOp::Add, SystemFlags::SEEN, &[]).unwrap();
    assert_eq!(woken.load(Ordering::SeqCst), n);

    // Changes made behind our back by another process (a rename of a flag) are found.
    let cur = acct.root().join("cur");
    let name = files(&cur)
        .into_iter()
        .find(|n| n.contains(":2,S") && n.ends_with('a'))
        .unwrap();
    fs::rename(cur.join(&name), cur.join(name.replace(":2,Sa", ":2,FSa"))).unwrap();
    s.registry().notify(acct.root());
    let ch = a.refresh(true).unwrap();
    assert_eq!(ch.flags, [1]);
    assert_eq!(
        a.message(1).unwrap().flags,
        SystemFlags::FLAGGED.union(SystemFlags::SEEN)
    );
    // And a STORE racing with that rename still lands.
    let name = files(&cur)
        .into_iter()
        .find(|n| n.contains(":2,FSa"))
        .unwrap();
    fs::rename(cur.join(&name), cur.join(name.replace(":2,FSa", ":2,Sa"))).unwrap();
    a.store(&[2], StoreOp::Add, SystemFlags::ANSWERED, &[])
        .unwrap();
    assert_eq!(
        a.message(1).unwrap().flags,
        SystemFlags::ANSWERED.union(SystemFlags::SEEN)
    );
    assert!(files(&cur).iter().any(|n| n.ends_with(":2,RSa")));
}

#[test]
fn ten_thousand_messages_open_without_reading_any() {
    const N: usize = 10_000;
    let td = TempDir::new();
    let s = store(&td);
    let acct = s.account(D, "big").unwrap();
    let cur = acct.root().join("cur");
    for i in 0..N {
        let flags = if i % 2 == 0 { "S" } else { "" };
        fs::write(
            cur.join(format!("{}.M{i}P1.h,S=5:2,{flags}", 1_600_000_000 + i)),
            b"12345",
        )
        .unwrap();
    }
    drop(acct);
    let opens = || MESSAGE_OPENS.with(|c| c.get());
    let before = opens();
    let acct = s.account(D, "big").unwrap();
    let view = acct.select("INBOX").unwrap();
    assert_eq!(view.exists() as usize, N);
    assert_eq!(view.unseen() as usize, N / 2);
    // FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE) comes from the view.
    let total: u64 = view.messages().iter().map(|m| m.size).sum();
    assert_eq!(total, 5 * N as u64);
    assert!(view.messages().windows(2).all(|w| w[0].uid < w[1].uid));
    drop(view);
    // And after a restart, from the index.
    let s = store(&td);
    let acct = s.account(D, "big").unwrap();
    let view = acct.select("INBOX").unwrap();
    assert_eq!(view.exists() as usize, N);
    assert_eq!(acct.status("INBOX").unwrap().messages as usize, N);
    assert_eq!(opens(), before, "no message file was opened");
    view.open_message(1).unwrap();
    assert_eq!(opens(), before + 1);
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<MailStore>();
    check::<Account>();
    check::<MailboxView>();
    check::<SharedMailbox>();
    check::<MailboxRegistry>();
    fn send<T: Send>() {}
    send::<AppendWriter>();
}

#[test]
fn error_codes() {
    assert_eq!(
        MailstoreError::NoSuchMailbox("x".into()).response_code(),
        "NONEXISTENT"
    );
    assert_eq!(
        MailstoreError::AlreadyExists("x".into()).response_code(),
        "ALREADYEXISTS"
    );
    assert_eq!(
        MailstoreError::Expunged { uid: 1 }.response_code(),
        "EXPUNGEISSUED"
    );
}

/// Runs Debian's Dovecot IMAP binary (PREAUTH on stdin/stdout, the docker-mailserver layout)
/// over a mailbox ironpost wrote, then reads back what Dovecot changed. Needs root and
/// `/usr/lib/dovecot/imap` (installed by /work/shared/peer/setup.sh); run with
/// `cargo test -p ironpost --lib dovecot_interop -- --ignored`.
#[test]
#[ignore = "needs Dovecot installed and root"]
fn dovecot_interop() {
    use std::process::{Command, Stdio};
    let imap = std::path::Path::new("/usr/lib/dovecot/imap");
    assert!(imap.exists(), "Dovecot is not installed");
    let td = TempDir::new();
    for i in 0..3 {
        deliver(&td, "u", &format!("Subject: {i}\r\n\r\nbody {i}\r\n"));
    }
    let (validity, archive_validity) = {
        let s = store(&td);
        let acct = s.account(D, "u").unwrap();
        let mut inbox = acct.select("INBOX").unwrap();
        inbox
            .store(&[2], StoreOp::Add, SystemFlags::SEEN, &["$Junk"])
            .unwrap();
        inbox
            .store(&[3], StoreOp::Add, SystemFlags::DELETED, &[])
            .unwrap();
        inbox.expunge(None).unwrap();
        acct.create("Archive.2024").unwrap();
        acct.create("Entw\u{fc}rfe").unwrap();
        acct.append_from(
            "Archive.2024",
            &mut &b"Subject: old\r\n\r\nold\r\n"[..],
            SystemFlags::SEEN,
            &[],
            None,
        )
        .unwrap();
        (
            inbox.uidvalidity(),
            acct.status("Archive.2024").unwrap().uidvalidity,
        )
    };
    let conf = td.path().join("dovecot.conf");
    let mail = td.path().join("mail");
    fs::create_dir_all(td.path().join("run")).unwrap();
    fs::write(
        &conf,
        format!(
            "mail_location = maildir:{}/%d/%n\nmail_uid = nobody\nmail_gid = nogroup\n\
             passdb {{\n driver = static\n args = nopassword=y\n}}\n\
             userdb {{\n driver = static\n args = home={}/home\n}}\n\
             namespace inbox {{\n inbox = yes\n}}\nlog_path = /dev/stderr\nbase_dir = {}/run\nssl = no\n",
            mail.display(),
            td.path().display(),
            td.path().display()
        ),
    )
    .unwrap();
    fs::create_dir_all(td.path().join("home")).unwrap();
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&mail)
        .arg(td.path().join("home"))
        .status()
        .unwrap();
    assert!(status.success());
    let script = "a SELECT INBOX\r\n\
        b UID FETCH 1:* (FLAGS)\r\n\
        c LIST \"\" *\r\n\
        d LSUB \"\" *\r\n\
        e STATUS Archive.2024 (MESSAGES UIDNEXT UIDVALIDITY)\r\n\
        f UID STORE 1 +FLAGS (\\Answered)\r\n\
        g APPEND INBOX (\\Flagged $Dove) {20+}\r\nSubject: dove\r\n\r\nx\r\n\r\n\
        h LOGOUT\r\n";
    let mut child = Command::new(imap)
        .arg("-c")
        .arg(&conf)
        .env("USER", format!("u@{D}"))
        .env("HOME", td.path().join("home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let has = |s: &str| {
        assert!(
            text.contains(s),
            "missing {s:?} in:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    has(&format!("[UIDVALIDITY {validity}]"));
    has("* 2 EXISTS");
    has("[UIDNEXT 4]");
    has("* 1 FETCH (UID 1 FLAGS (");
    has("* 2 FETCH (UID 2 FLAGS (\\Seen $Junk))");
    has("\".\" Archive.2024\r\n");
    has("(\\Noselect \\HasChildren) \".\" Archive\r\n");
    has("\".\" Entw&APw-rfe\r\n");
    has("* LSUB () \".\" Sent\r\n");
    has(&format!(
        "* STATUS Archive.2024 (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {archive_validity})"
    ));
    has(&format!("g OK [APPENDUID {validity} 4]"));
    has("h OK");

    // Back in ironpost, after Dovecot changed things.
    let s = store(&td);
    let acct = s.account(D, "u").unwrap();
    let inbox = acct.select("INBOX").unwrap();
    assert_eq!(inbox.uidvalidity(), validity);
    assert_eq!(uids(&inbox), [1, 2, 4]);
    assert_eq!(inbox.message(1).unwrap().flags, SystemFlags::ANSWERED);
    let m = inbox.message(3).unwrap();
    assert_eq!(m.flags, SystemFlags::FLAGGED);
    assert_eq!(inbox.keyword_names(m.keywords), ["$Dove"]);
    assert_eq!(
        inbox.keyword_names(inbox.message(2).unwrap().keywords),
        ["$Junk"]
    );
    // Dovecot stores bare LF (mail_save_crlf = no) and records the CRLF size in ",W=".
    assert_eq!(
        read_all(inbox.open_message(4).unwrap()),
        "Subject: dove\n\nx\n"
    );
    assert_eq!(m.size, 20);
    let mut inbox = inbox;
    let a = acct
        .append_from(
            "INBOX",
            &mut &b"after\r\n"[..],
            SystemFlags::empty(),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(a.uid, 5);
    assert_eq!(inbox.refresh(true).unwrap().exists, Some(4));
}

/// Many sessions appending at once, deliveries arriving, and a second registry (standing in
/// for another process sharing the Maildir) appending too: every message gets exactly one
/// UID, UIDs ascend, and the index on disk agrees with both.
#[test]
fn concurrent_appends_from_two_processes_never_share_a_uid() {
    const THREADS: usize = 4;
    const EACH: usize = 15;
    let td = TempDir::new();
    let one = store(&td);
    let other = MailStore::open(td.path(), "other.example.org").unwrap();
    let acct1 = one.account(D, "zed").unwrap();
    let acct2 = other.account(D, "zed").unwrap();
    let mut watcher = acct1.select("INBOX").unwrap();
    let threads: Vec<_> = (0..THREADS * 2 + 1)
        .map(|t| {
            let acct = if t % 2 == 0 {
                acct1.clone()
            } else {
                acct2.clone()
            };
            let td_path = td.path().to_owned();
            let registry = Arc::clone(one.registry());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..EACH {
                    if t == THREADS * 2 {
                        // The SMTP path, announcing each delivery.
                        let smtp = Store::open(&td_path, "mx").unwrap();
                        let mut w = smtp
                            .begin(
                                "a@b",
                                vec![Recipient {
                                    domain: D.into(),
                                    local: "zed".into(),
                                    delivered_to: "zed".into(),
                                }],
                                b"",
                            )
                            .unwrap();
                        w.write(format!("smtp {i}\r\n").as_bytes()).unwrap();
                        for p in w.commit().unwrap() {
                            registry.notify_delivered(&p);
                        }
                    } else {
                        let body = format!("thread {t} message {i}\r\n");
                        let a = acct
                            .append_from(
                                "INBOX",
                                &mut body.as_bytes(),
                                SystemFlags::empty(),
                                &[],
                                None,
                            )
                            .unwrap();
                        got.push((a.uid, body));
                    }
                }
                got
            })
        })
        .collect();
    let mut appended = Vec::new();
    for t in threads {
        appended.extend(t.join().unwrap());
    }
    let total = THREADS * 2 * EACH + EACH;
    watcher.refresh(true).unwrap();
    assert_eq!(watcher.exists() as usize, total);
    let all = uids(&watcher);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    // Each appended UID names the message that was appended.
    for (uid, body) in &appended {
        assert_eq!(
            &read_all(watcher.open_message(*uid).unwrap()),
            body,
            "uid {uid}"
        );
    }
    let mut from_other = acct2.select("INBOX").unwrap();
    from_other.refresh(true).unwrap();
    assert_eq!(uids(&from_other), all);
    // A restart reads the same mapping from the index.
    let index = fs::read_to_string(acct1.root().join("dovecot-uidlist")).unwrap();
    assert_eq!(index.lines().count(), total + 1);
    drop((watcher, from_other, acct1, acct2, one, other));
    let s = store(&td);
    let view = s.account(D, "zed").unwrap().select("INBOX").unwrap();
    assert_eq!(uids(&view), all);
    for (uid, body) in &appended {
        assert_eq!(&read_all(view.open_message(*uid).unwrap()), body);
    }
}
