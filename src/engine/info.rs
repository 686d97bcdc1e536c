//! `info`: build information, readable without a token.

use std::sync::Arc;

use serde_json::json;

use super::{Engine, Error};
use crate::logical::{handler, Operation, Request, Response, Route};

pub fn routes(engine: &Arc<Engine>) -> Vec<Route<Error>> {
    vec![
        Route::new("info", "Build information of the engine.", INFO_HELP)
            .unauthenticated()
            .op(
                Operation::Read,
                "Report name, version, git commit and build date.",
                handler(engine, read),
            ),
    ]
}

async fn read(_engine: Arc<Engine>, _req: Request) -> Result<Response, Error> {
    Ok(Response::json(json!({
        "name": "pgsecrets",
        "version": crate::VERSION,
        "git_commit": env!("PGSECRETS_GIT_COMMIT"),
        "build_date": env!("PGSECRETS_BUILD_DATE"),
    })))
}

const INFO_HELP: &str = "Returns the engine's name, version, the git commit it was built from and the build date. No token is needed.";
