//! The route tables and the documents generated from them.

use std::collections::HashSet;
use std::path::Path;

use pgsecrets::logical::FieldKind;

#[tokio::test]
async fn the_checked_in_api_reference_is_up_to_date() {
    let files = pgsecrets::cli::docs::reference_files().await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("routes");
    let mut stale = Vec::new();
    for (name, contents) in &files {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if &on_disk != contents {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "routes/ is stale ({stale:?}): run `cargo run -- gen-docs` and commit the result"
    );
}

#[tokio::test]
async fn every_route_is_fully_described() {
    let (storage, _) = pgsecrets::server::fresh_inmem(None).await.unwrap();
    let router = pgsecrets::server::assemble(storage).await.unwrap().router;
    for (mount, backend) in router.mounts.backends() {
        let mut summaries = HashSet::new();
        for route in &backend.routes {
            let at = format!("{}{}", mount.path, route.template);
            assert!(
                !route.synopsis.is_empty() && !route.description.is_empty(),
                "{at}: no help"
            );
            assert!(!route.operations.is_empty(), "{at}: no operations");
            for capture in route.capture_names() {
                let kind = route.capture_kind(capture);
                assert!(
                    matches!(kind, Some(FieldKind::Name) | Some(FieldKind::Path)),
                    "{at}: capture {capture} is not a declared path field"
                );
            }
            for field in &route.fields {
                assert!(
                    !field.description.is_empty(),
                    "{at}: field {} undescribed",
                    field.name
                );
            }
            for op in &route.operations {
                assert!(
                    summaries.insert(op.summary),
                    "{at}: summary {:?} used twice in {}",
                    op.summary,
                    mount.path
                );
            }
        }
    }
}
