//! The hottest queries read the indexes meant for them. SQLite's planner has no statistics
//! unless `ANALYZE` ran, so an index that looks as good on paper can win: migration 0007's
//! (paused, id) index once turned every claim and every wakeup into a sort of all active
//! schedules. PostgreSQL plans from statistics, so its figures are in the benchmarks instead
//! (`cargo xtask bench --schedules 1000000`).

use jobstore::{DatabaseUrl, ListFilter, Page, SqlStore, StoreName};

async fn sqlite_store() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::parse(&format!("sqlite://{}/plans.db", dir.path().display())).unwrap();
    let db = jobstore::connect(&url, 2).await.unwrap();
    (SqlStore::new(&db, StoreName::Execution), dir)
}

fn page(filter: ListFilter) -> ListFilter {
    ListFilter {
        include_inactive: true,
        page: Some(Page {
            after_id: Some("m".into()),
            limit: 100,
        }),
        ..filter
    }
}

#[tokio::test]
async fn claims_and_wakeups_read_the_due_index_without_a_sort() {
    let (store, _dir) = sqlite_store().await;
    let plans = store.plans(&page(ListFilter::default())).await.unwrap();
    for (name, plan) in [("due", &plans.due), ("wakeup", &plans.wakeup)] {
        assert!(plan.contains("schedules_execution_due"), "{name}:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
    }
}

#[tokio::test]
async fn each_listing_filter_reads_its_index_in_id_order() {
    let (store, _dir) = sqlite_store().await;
    let cases = [
        (
            ListFilter {
                owner: Some("alice".into()),
                ..ListFilter::default()
            },
            "schedules_execution_owner_id",
        ),
        (
            ListFilter {
                paused: Some(true),
                ..ListFilter::default()
            },
            "schedules_execution_paused",
        ),
        (
            ListFilter {
                target_type: Some("http".into()),
                ..ListFilter::default()
            },
            "schedules_execution_kind_id",
        ),
        (
            ListFilter {
                tag: Some("nightly".into()),
                ..ListFilter::default()
            },
            "SEARCH t USING PRIMARY KEY (jobstore=? AND tag=?",
        ),
    ];
    for (filter, index) in cases {
        let plan = store.plans(&page(filter.clone())).await.unwrap().listing;
        assert!(
            plan.contains(index),
            "{filter:?} should read {index}:\n{plan}"
        );
        assert!(!plan.contains("SCAN"), "{filter:?} walks a table:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{filter:?} sorts:\n{plan}");
    }
}
