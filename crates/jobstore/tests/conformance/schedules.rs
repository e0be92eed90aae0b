//! Storing, reading, listing, replacing and deleting schedules.

use super::*;

async fn insert_get_and_conflict(store: Arc<dyn JobStore>) {
    let s = schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z"));
    store.insert(&s).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), Some(s.clone()));
    assert!(matches!(store.insert(&s).await, Err(StoreError::Conflict(id)) if id == "a"));
    assert_eq!(store.get("missing").await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn insert_many_is_all_or_nothing(store: Arc<dyn JobStore>) {
    let batch: Vec<_> = (0..3)
        .map(|i| schedule(&format!("b{i}"), "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .collect();
    store.insert_many(&batch).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 3);
    let clashing = vec![
        schedule("new", "u1", "g1", None),
        schedule("b1", "u1", "g1", None),
    ];
    assert!(matches!(
        store.insert_many(&clashing).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get("new").await.unwrap(),
        None,
        "nothing of a failed batch is stored"
    );
    assert_eq!(store.count().await.unwrap(), 3);
    let ids: Vec<_> = store
        .list(&ListFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["b0", "b1", "b2"]);
}

async fn list_filters_by_owner_graph_and_activity(store: Arc<dyn JobStore>) {
    let mut paused = schedule("p", "u1", "g1", None);
    paused.paused = true;
    let rows = [
        schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")),
        schedule("b", "u2", "g1", Some("2026-01-01T10:00:00Z")),
        schedule("c", "u1", "g2", Some("2026-01-01T10:00:00Z")),
        paused,
    ];
    for row in &rows {
        store.insert(row).await.unwrap();
    }
    let ids = |found: Vec<Schedule>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let by_owner = ListFilter {
        owner: Some("u1".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&by_owner).await.unwrap()), ["a", "c"]);
    let by_graph = ListFilter {
        graph_id: Some("g1".into()),
        ..Default::default()
    };
    assert_eq!(ids(store.list(&by_graph).await.unwrap()), ["a", "b"]);
    let everything = ListFilter {
        include_inactive: true,
        ..Default::default()
    };
    assert_eq!(
        ids(store.list(&everything).await.unwrap()),
        ["a", "b", "c", "p"]
    );
    let nobody = ListFilter {
        owner: Some("u3".into()),
        ..Default::default()
    };
    assert!(store.list(&nobody).await.unwrap().is_empty());
    let scope = |patterns: &[&str]| {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Some(Owners::parse(&patterns).unwrap())
    };
    let within = |owners| ListFilter {
        owners,
        include_inactive: true,
        ..Default::default()
    };
    let found = store.list(&within(scope(&["u2"]))).await.unwrap();
    assert_eq!(ids(found), ["b"], "a client's owners, by name");
    let found = store.list(&within(scope(&["u*"]))).await.unwrap();
    assert_eq!(ids(found), ["a", "b", "c", "p"], "by prefix");
    let found = store.list(&within(scope(&["u1", "x*"]))).await.unwrap();
    assert_eq!(ids(found), ["a", "c", "p"], "names and prefixes");
    let found = store.list(&within(scope(&["U*", "u"]))).await.unwrap();
    assert!(ids(found).is_empty(), "a prefix is matched case and all");
    let paged = ListFilter {
        page: Some(Page {
            after_id: Some("a".into()),
            limit: 1,
        }),
        ..within(scope(&["u1"]))
    };
    assert_eq!(ids(store.list(&paged).await.unwrap()), ["c"], "and paged");
}

async fn delete_returns_the_schedule_and_keeps_its_history(store: Arc<dyn JobStore>) {
    store
        .insert(&schedule("a", "u1", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let deleted = store.delete("a").await.unwrap().unwrap();
    assert_eq!(deleted.id, "a");
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.delete("a").await.unwrap(), None);
    assert_eq!(
        store.runs("a", &RunFilter::latest(10)).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.next_wakeup().await.unwrap(),
        Some(at("2026-01-01T10:00:30Z")),
        "the pending run's lease"
    );
}

async fn replace_changes_in_place_and_keeps_the_ledger(store: Arc<dyn JobStore>) {
    let original = http_schedule("r", Overlap::Skip, "2026-01-01T10:00:00Z");
    store.insert(&original).await.unwrap();
    store
        .claim_due(at("2026-01-01T10:00:00Z"), 10, LEASE)
        .await
        .unwrap();
    let mut changed = original.clone();
    changed.name = "renamed".into();
    changed.tags = vec!["nightly".into()];
    changed.policy.jitter_secs = 5;
    changed.next_run_at = Some(at("2026-02-01T00:00:00Z"));
    changed.created_at = at("2030-01-01T00:00:00Z");
    let stored = store.replace(&changed, false).await.unwrap().unwrap();
    assert_eq!(stored.created_at, original.created_at, "creation time kept");
    assert_eq!(
        (
            stored.name.as_str(),
            stored.tags.clone(),
            stored.policy.jitter_secs
        ),
        ("renamed", vec!["nightly".to_string()], 5)
    );
    assert_eq!(store.get("r").await.unwrap(), Some(stored));
    assert_eq!(statuses(&store, "r").await, [RunStatus::Pending]);
    // The due index follows the new next run.
    assert!(
        store
            .claim_due(at("2026-01-31T00:00:00Z"), 10, LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .next_wakeup()
            .await
            .unwrap()
            .map(|w| w.min(at("2026-02-01T00:00:00Z"))),
        Some(at("2026-01-01T10:00:30Z")),
        "the run in flight's lease comes first"
    );
    let mut missing = changed.clone();
    missing.id = "nope".into();
    assert_eq!(store.replace(&missing, false).await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 1);
}

async fn listing_pages_by_id_with_filters(store: Arc<dyn JobStore>) {
    for (id, tags, paused) in [
        ("c", vec!["a"], false),
        ("a", vec!["a", "b"], true),
        ("d", vec![], false),
        ("b", vec!["b"], false),
    ] {
        let mut s = http_schedule(id, Overlap::Skip, "2026-01-01T10:00:00Z");
        s.tags = tags.into_iter().map(String::from).collect();
        s.paused = paused;
        store.insert(&s).await.unwrap();
    }
    store
        .insert(&schedule("e", "u2", "g1", Some("2026-01-01T10:00:00Z")))
        .await
        .unwrap();
    let page = |after: Option<&str>, limit| ListFilter {
        include_inactive: true,
        page: Some(Page {
            after_id: after.map(String::from),
            limit,
        }),
        ..ListFilter::default()
    };
    let ids = |found: Vec<Schedule>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list(&page(None, 2)).await.unwrap()), ["a", "b"]);
    assert_eq!(
        ids(store.list(&page(Some("b"), 2)).await.unwrap()),
        ["c", "d"]
    );
    assert_eq!(ids(store.list(&page(Some("d"), 2)).await.unwrap()), ["e"]);
    assert!(store.list(&page(Some("e"), 2)).await.unwrap().is_empty());
    let filtered = |f: ListFilter| {
        let store = store.clone();
        async move { ids(store.list(&f).await.unwrap()) }
    };
    assert_eq!(
        filtered(ListFilter {
            tag: Some("b".into()),
            ..page(None, 10)
        })
        .await,
        ["a", "b"]
    );
    assert_eq!(
        filtered(ListFilter {
            target_type: Some("graph_execution".into()),
            ..page(None, 10)
        })
        .await,
        ["e"]
    );
    assert_eq!(
        filtered(ListFilter {
            paused: Some(true),
            ..page(None, 10)
        })
        .await,
        ["a"]
    );
    assert_eq!(
        filtered(ListFilter {
            owner: Some("u1".into()),
            paused: Some(false),
            target_type: Some("http".into()),
            ..page(None, 10)
        })
        .await,
        ["b", "c", "d"]
    );
}

/// A listing by tag follows what the schedules carry now: a replace that changes the tags, a
/// delete, and a page that starts after a cursor.
async fn a_tags_listing_follows_replace_and_delete(store: Arc<dyn JobStore>) {
    for id in ["t1", "t2", "t3"] {
        let mut s = http_schedule(id, Overlap::Skip, "2026-01-01T10:00:00Z");
        s.tags = vec!["old".into(), "all".into()];
        store.insert(&s).await.unwrap();
    }
    let tagged = |tag: &str, after: Option<&str>| ListFilter {
        tag: Some(tag.into()),
        include_inactive: true,
        page: Some(Page {
            after_id: after.map(String::from),
            limit: 10,
        }),
        ..ListFilter::default()
    };
    let ids = |found: Vec<Schedule>| found.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let mut moved = store.get("t2").await.unwrap().unwrap();
    moved.tags = vec!["new".into(), "all".into()];
    store.replace(&moved, false).await.unwrap().unwrap();
    store.delete("t3").await.unwrap().unwrap();
    assert_eq!(ids(store.list(&tagged("old", None)).await.unwrap()), ["t1"]);
    assert_eq!(ids(store.list(&tagged("new", None)).await.unwrap()), ["t2"]);
    assert_eq!(
        ids(store.list(&tagged("all", Some("t1"))).await.unwrap()),
        ["t2"]
    );
    let unpaged = ListFilter {
        page: None,
        owner: Some("u1".into()),
        ..tagged("all", None)
    };
    assert_eq!(ids(store.list(&unpaged).await.unwrap()), ["t1", "t2"]);
    assert!(
        store
            .list(&tagged("nobody's", None))
            .await
            .unwrap()
            .is_empty()
    );
}

/// AutoGPT's organisation visibility: own schedules, the organisation's home and the teams
/// named, never another's expert schedule.
async fn a_listing_by_organisation_sees_its_home_its_teams_and_its_own(store: Arc<dyn JobStore>) {
    let tenant =
        |id: &str, owner: &str, org: Option<&str>, team: Option<&str>, expert: Option<&str>| {
            let mut row = schedule(id, owner, "g1", Some("2026-01-01T10:00:00Z"));
            if let Target::GraphExecution(graph) = &mut row.target {
                graph.organization_id = org.map(str::to_string);
                graph.team_id = team.map(str::to_string);
                graph.expert_id = expert.map(str::to_string);
            }
            row
        };
    let rows = [
        tenant("own", "u1", None, None, None),
        tenant("home", "u2", Some("o"), None, None),
        tenant("team-a", "u2", Some("o"), Some("a"), None),
        tenant("team-b", "u2", Some("o"), Some("b"), None),
        tenant("elsewhere", "u3", Some("p"), None, None),
        tenant("expert", "u2", Some("o"), None, Some("e")),
        tenant("own-expert", "u1", Some("o"), None, Some("e2")),
    ];
    for row in &rows {
        store.insert(row).await.unwrap();
    }
    let listed = |owner: Option<&str>, org: &str, teams: &[&str]| {
        let filter = ListFilter {
            owner: owner.map(str::to_string),
            tenancy: Some(jobstore::Tenancy {
                organization_id: org.into(),
                team_ids: teams.iter().map(|t| t.to_string()).collect(),
            }),
            ..Default::default()
        };
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store
                .list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        listed(Some("u1"), "o", &["a"]).await,
        ["home", "own", "own-expert", "team-a"]
    );
    assert_eq!(
        listed(None, "o", &[]).await,
        ["home"],
        "no owner: no expert schedule"
    );
    assert_eq!(
        listed(Some("u3"), "o", &["a", "b"]).await,
        ["elsewhere", "home", "team-a", "team-b"]
    );
    assert_eq!(
        listed(Some("u9"), "nobody", &["a"]).await,
        Vec::<String>::new()
    );
}

test_support::backend_matrix!(fixture = store_on; [memory, sqlite, postgres] [
    a_listing_by_organisation_sees_its_home_its_teams_and_its_own,
    insert_get_and_conflict,
    insert_many_is_all_or_nothing,
    list_filters_by_owner_graph_and_activity,
    delete_returns_the_schedule_and_keeps_its_history,
    replace_changes_in_place_and_keeps_the_ledger,
    listing_pages_by_id_with_filters,
    a_tags_listing_follows_replace_and_delete,
]);
