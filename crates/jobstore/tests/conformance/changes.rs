//! The audit log: changes are kept in order, listed newest first by schedule, owner, a
//! client's owners and time, paged by their place in the log, and pruned by age.

use jobstore::{Change, ChangeFilter, ChangeLog};

use super::*;

async fn changes_on(
    backend: Backend,
) -> Option<(Arc<dyn ChangeLog>, Box<dyn std::any::Any + Send>)> {
    match backend {
        Backend::Memory => Some((
            Arc::new(MemoryStore::new(StoreName::Execution)),
            Box::new(()),
        )),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url =
                DatabaseUrl::parse(&format!("sqlite://{}/c.db", dir.path().display())).unwrap();
            let db = jobstore::connect(&url, 4).await.unwrap();
            Some((jobstore::change_log(&db), Box::new(dir)))
        }
        Backend::Postgres => {
            let schema = PgSchema::create("changes").await?;
            let url = DatabaseUrl::parse(&schema.url()).unwrap();
            let db = jobstore::connect(&url, 4).await.unwrap();
            Some((jobstore::change_log(&db), Box::new(schema)))
        }
    }
}

fn change(schedule_id: &str, owner: &str, action: &str, at_text: &str) -> Change {
    let before = schedule(schedule_id, owner, "g1", None);
    let mut after = before.clone();
    after.name = format!("{schedule_id} renamed");
    Change {
        seq: 0,
        at: at(at_text),
        jobstore: StoreName::Execution,
        schedule_id: schedule_id.into(),
        owner: owner.into(),
        actor: "agnt".into(),
        route: "jsonrpc".into(),
        action: action.into(),
        changes: Change::diff(Some(&before), Some(&after)),
    }
}

async fn changes_are_listed_newest_first_and_pruned_by_age(log: Arc<dyn ChangeLog>) {
    let written = [
        change("a", "agnt", "create", "2026-01-01T10:00:00Z"),
        change("a", "agnt", "update", "2026-01-01T10:01:00Z"),
        change("b", "farm", "create", "2026-01-01T10:02:00Z"),
        change("c", "user-7", "pause", "2026-01-01T10:03:00Z"),
    ];
    for one in &written {
        log.record_change(one).await.unwrap();
    }
    let listed = |filter: ChangeFilter| {
        let log = log.clone();
        async move {
            let found = log.changes(&filter).await.unwrap();
            found
                .into_iter()
                .map(|c| format!("{}:{}", c.schedule_id, c.action))
                .collect::<Vec<_>>()
        }
    };
    let all = ChangeFilter {
        limit: 100,
        ..ChangeFilter::default()
    };
    assert_eq!(
        listed(all.clone()).await,
        ["c:pause", "b:create", "a:update", "a:create"]
    );
    let everything = log.changes(&all).await.unwrap();
    let newest = &everything[0];
    assert_eq!(
        (newest.actor.as_str(), newest.route.as_str()),
        ("agnt", "jsonrpc")
    );
    assert_eq!(
        newest.changes,
        json!({"name": {"before": "schedule c", "after": "c renamed"}}),
        "only what differs"
    );
    assert!(everything.windows(2).all(|w| w[0].seq > w[1].seq));
    let of_a = ChangeFilter {
        schedule_id: Some("a".into()),
        ..all.clone()
    };
    assert_eq!(listed(of_a).await, ["a:update", "a:create"]);
    let of_farm = ChangeFilter {
        owner: Some("farm".into()),
        ..all.clone()
    };
    assert_eq!(listed(of_farm).await, ["b:create"]);
    let scoped = ChangeFilter {
        owners: Some(Owners::parse(&["agnt".into(), "user-*".into()]).unwrap()),
        ..all.clone()
    };
    assert_eq!(listed(scoped).await, ["c:pause", "a:update", "a:create"]);
    let since = ChangeFilter {
        since: Some(at("2026-01-01T10:02:00Z")),
        ..all.clone()
    };
    assert_eq!(listed(since).await, ["c:pause", "b:create"]);
    let page = ChangeFilter {
        before_seq: Some(everything[1].seq),
        limit: 1,
        ..all.clone()
    };
    assert_eq!(listed(page).await, ["a:update"]);

    let pruned = log
        .prune_changes(at("2026-01-01T10:02:00Z"), 100)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(listed(all).await, ["c:pause", "b:create"]);
}

#[test]
fn a_diff_names_only_the_fields_that_changed() {
    let before = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    let mut after = before.clone();
    after.paused = true;
    after.next_run_at = None;
    assert_eq!(
        Change::diff(Some(&before), Some(&after)),
        json!({"paused": {"before": false, "after": true}}),
        "the engine's next run is not a change anyone made"
    );
    let created = Change::diff(None, Some(&before));
    assert_eq!(created["owner"], json!({"before": null, "after": "u1"}));
    let deleted = Change::diff(Some(&before), None);
    assert_eq!(deleted["name"]["after"], json!(null));
}

/// A store of the `execution` jobstore and the audit log of its database.
type WithLog = (Arc<dyn JobStore>, Arc<dyn ChangeLog>);

async fn store_and_log_on(backend: Backend) -> Option<(WithLog, Box<dyn std::any::Any + Send>)> {
    let in_memory = |store: Arc<MemoryStore>| store as Arc<dyn ChangeLog>;
    execution_and(backend, "recorded", jobstore::change_log, in_memory).await
}

async fn a_creation_is_stored_with_its_change_or_neither_is((store, log): WithLog) {
    let new = schedule("r1", "agnt", "g1", Some("2026-01-01T10:00:00Z"));
    let mut created = change("r1", "agnt", "create", "2026-01-01T09:00:00Z");
    created.changes = Change::diff(None, Some(&new));
    store.insert_recorded(&new, &created).await.unwrap();
    assert_eq!(store.get("r1").await.unwrap(), Some(new.clone()));
    let all = ChangeFilter {
        limit: 10,
        ..ChangeFilter::default()
    };
    let logged = log.changes(&all).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].changes["owner"]["after"], "agnt");
    let again = store.insert_recorded(&new, &created).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        log.changes(&all).await.unwrap().len(),
        1,
        "a creation that failed left no change"
    );
}

/// The creations written with their change, beside the log's own matrix.
mod recorded {
    use super::*;

    test_support::backend_matrix!(fixture = store_and_log_on; [memory, sqlite, postgres] [
        a_creation_is_stored_with_its_change_or_neither_is,
    ]);
}

test_support::backend_matrix!(fixture = changes_on; [memory, sqlite, postgres] [
    changes_are_listed_newest_first_and_pruned_by_age,
]);
