//! The OpenAPI 3 document of the HTTP API (`GET /openapi.json`), generated from the handlers.

use axum::Json;
use utoipa::OpenApi;

use super::{admin, callback, error, health, pbx, reports};

#[derive(OpenApi)]
#[openapi(
    info(title = "callpool", description = "Dynamic call tracking: HTTP API"),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        admin::pool_all,
        admin::pool_site,
        admin::dead_letters,
        admin::requeue,
        admin::status,
        admin::config,
        admin::reload,
        admin::analytics_setup,
        admin::analytics_check,
        admin::webhook_test,
        pbx::activity,
        pbx::receive,
        pbx::check_url,
        pbx::receive_named,
        pbx::check_named_url,
        pbx::receive_event,
        reports::overview,
        reports::calls,
        reports::sources,
        reports::summary,
        reports::yandex_csv,
        reports::page,
        reports::unassigned,
        reports::callbacks,
        reports::recording,
        callback::create,
        callback::status,
    ),
    components(schemas(
        error::ErrorBody,
        error::ErrorDetail,
        health::Ready,
        admin::PoolStatus,
        admin::SitePoolStatus,
        admin::DeadLetters,
        admin::DeadLetter,
        admin::Requeue,
        pbx::PbxActivityList,
        pbx::PbxActivity,
        pbx::Seen,
        admin::Requeued,
        admin::Status,
        admin::Reloaded,
        admin::RunningConfig,
        admin::ConfiguredSite,
        admin::ConfiguredPbx,
        admin::NodeVersion,
        admin::WebhookTest,
        crate::jobs::call_webhook::TestDelivery,
        crate::jobs::call_webhook::CallEvent,
        crate::jobs::call_webhook::CallFacts,
        crate::jobs::call_webhook::MatchFacts,
        crate::jobs::call_webhook::CallbackEvent,
        crate::jobs::call_webhook::CallbackFacts,
        crate::jobs::call_webhook::Session,
        crate::jobs::call_webhook::Envelope,
        crate::jobs::ga4_setup::SetupReport,
        crate::jobs::ga4_setup::Item,
        crate::jobs::ga4_setup::Outcome,
        crate::jobs::ga4_setup::CheckReport,
        crate::jobs::ga4_setup::Validation,
        admin::StoreStatus,
        admin::BusStatus,
        admin::Noted,
        admin::PbxStatus,
        admin::LastRequest,
        admin::LastRefusal,
        admin::PbxCounts,
        admin::DestinationStatus,
        admin::DeliveryError,
        crate::pbx::callpool::CallWebhook,
        crate::pbx::CallAccepted,
        crate::calls::CallStatus,
        crate::calls::MatchKind,
        crate::reports::CallRow,
        crate::reports::CallList,
        crate::reports::Summary,
        crate::reports::DayCounts,
        crate::reports::UnassignedCall,
        crate::reports::callbacks::CallbackRow,
        crate::reports::callbacks::CallbackList,
        callback::CallbackRequest,
        callback::CallbackView,
        crate::callback::CallbackStatus,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

pub async fn document() -> Json<serde_json::Value> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    // OpenAPI 3.1's webhooks: what callpool posts to a site's `[[site.webhooks]]` (utoipa has
    // no attribute for them; the bodies' schemas are among the components).
    let hook = |schema: &str, what: &str| {
        serde_json::json!({"post": {
            "summary": what,
            "description": "Signed with `Callpool-Signature: t=<unix seconds>,v1=<hex>` (one v1 per secret of the URL), with `Callpool-Delivery` (the event's id, the same on every retry) and `Callpool-Event` (its type). Answer 2xx to take it; 5xx or 429 is retried with backoff, another 4xx gives it up (a dead letter). docs/PROTOCOL.md has the details.",
            "parameters": [
                {"name": "Callpool-Signature", "in": "header", "required": true, "schema": {"type": "string"}},
                {"name": "Callpool-Delivery", "in": "header", "required": true, "schema": {"type": "string"}},
                {"name": "Callpool-Event", "in": "header", "required": true, "schema": {"type": "string"}},
            ],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
            "responses": {"200": {"description": "Taken"}},
        }})
    };
    doc["webhooks"] = serde_json::json!({
        "call": hook("CallEvent", "A call's event: call.started, call.answered, call.completed or call.missed"),
        "callback": hook("CallbackEvent", "A callback's event: callback.requested or callback.finished"),
    });
    Json(doc)
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "report_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The site's report_token (callers masked) or admin_token, or the server's admin token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "pbx_signature",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Callpool-Signature",
                    "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with the PBX's secret>",
                ),
            )),
        );
    }
}
