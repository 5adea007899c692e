//! The checks of PROTOCOL.md §2.2, in their order: token (401), plane (403
//! `wrong_credential_type`), project (403 `project_scope_mismatch`), scope or grant
//! (403 `scope_insufficient`). Existence (404) and body (400) come after, in the routes.

use axum::http::{HeaderMap, header};
use inferencekey_core::wire::codes;

use crate::credentials::{Kind, TokenRecord};
use crate::error::ApiError;
use crate::registry::Registry;

/// Steps 1 and 2: a well-formed bearer header naming a known, usable token of the
/// plane's kind. A revoked data key is unknown (401); a revoked control token passes
/// here and fails the scope check (403), as the platform does.
pub(crate) fn authenticate<'r>(
    registry: &'r Registry,
    headers: &HeaderMap,
    plane: Kind,
) -> Result<&'r TokenRecord, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header; expected `Bearer <token>`")
        })?;
    let record = registry
        .token(token)
        .filter(|r| !(r.revoked && r.kind == Kind::Live))
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
    match (plane, record.kind) {
        (Kind::Sdk, Kind::Live) => Err(ApiError::forbidden(
            codes::WRONG_CREDENTIAL_TYPE,
            "an ik_live_ data key cannot be used on the control plane; use an ik_sdk_ token",
        )),
        (Kind::Live, Kind::Sdk) => Err(ApiError::forbidden(
            codes::WRONG_CREDENTIAL_TYPE,
            "an ik_sdk_ control token cannot be used on the data plane; use an ik_live_ key",
        )),
        _ => Ok(record),
    }
}

/// Step 3.
pub(crate) fn same_project(token: &TokenRecord, project: &str) -> Result<(), ApiError> {
    if token.project == project {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::PROJECT_SCOPE_MISMATCH,
            format!(
                "credential belongs to project '{}', not '{}'",
                token.project, project
            ),
        ))
    }
}

/// Step 4 for control tokens.
pub(crate) fn scope(token: &TokenRecord, scope: &str) -> Result<(), ApiError> {
    if token.has_scope(scope) {
        Ok(())
    } else if token.revoked {
        Err(ApiError::forbidden(
            codes::SCOPE_INSUFFICIENT,
            "this token has been revoked",
        ))
    } else {
        Err(ApiError::forbidden(
            codes::SCOPE_INSUFFICIENT,
            format!("this token lacks the scope `{scope}`"),
        ))
    }
}

/// Step 4 for data keys.
pub(crate) fn grant(token: &TokenRecord, project: &str, workload: &str) -> Result<(), ApiError> {
    if token.grants_workload(project, workload) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            codes::SCOPE_INSUFFICIENT,
            format!("this key has no grant for workload '{project}/{workload}'"),
        ))
    }
}
