//! VSS location discovery (protocol-transport.md §0.3): `OPTIONS {serverUrl}_apis/` lists the
//! legacy service's resources with their route templates; the official runner builds every
//! legacy URL from that list. [`expand_route`] fills a template in (pure).
//!
//! Only `client::actions` uses it so far; the other legacy routes still use their fixed
//! templates.

use reqwest::Method;
use reqwest::header::ACCEPT;
use serde::Deserialize;
use url::Url;

use super::ClientError;
use super::http::{HttpClient, read_json, with_bearer};

/// One resource of the location list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLocation {
    /// The location id (a GUID, compared case-insensitively).
    #[serde(alias = "Id")]
    pub id: String,
    /// The area, e.g. `distributedtask`.
    #[serde(default, alias = "Area")]
    pub area: String,
    /// The resource name, e.g. `actiondownloadinfo`.
    #[serde(default, alias = "ResourceName")]
    pub resource_name: String,
    /// The route template, e.g. `{scopeIdentifier}/_apis/{area}/hubs/{hubName}/...`.
    #[serde(alias = "RouteTemplate")]
    pub route_template: String,
}

#[derive(Debug, Deserialize)]
struct LocationList {
    #[serde(default, alias = "Value")]
    value: Vec<ResourceLocation>,
}

/// Asks the legacy service at `server_url` (ending in `/`) for its resource locations, with the
/// job token as Bearer. One attempt: callers fall back to fixed templates on failure.
pub async fn discover(
    http: &HttpClient,
    server_url: &Url,
    token: &str,
) -> Result<Vec<ResourceLocation>, ClientError> {
    let url = server_url
        .join("_apis/")
        .map_err(|e| ClientError::InvalidUrl {
            url: server_url.to_string(),
            reason: e.to_string(),
        })?;
    let request = http
        .request(Method::OPTIONS, url)
        .header(ACCEPT, "application/json");
    let resp = http.send_once(with_bearer(request, token)).await?;
    let list: LocationList = read_json(resp).await?;
    Ok(list.value)
}

/// The route template of location `id` in `locations`, if listed.
pub fn template_of<'a>(locations: &'a [ResourceLocation], id: &str) -> Option<&'a str> {
    locations
        .iter()
        .find(|l| l.id.eq_ignore_ascii_case(id))
        .map(|l| l.route_template.as_str())
}

/// Expands `template` under `base` (VSS rules): a `{name}` segment takes its value from
/// `values` (or `area`/`resource`), percent-encoded as one segment; a segment whose placeholder
/// has no value is dropped with its `/`. The query of `base` is cleared.
pub fn expand_route(base: &Url, template: &str, values: &[(&str, String)]) -> Url {
    let mut path = base.path().trim_end_matches('/').to_owned();
    for segment in template.split('/').filter(|s| !s.is_empty()) {
        let expanded = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                match values.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
                    Some((_, value)) => url::form_urlencoded::byte_serialize(value.as_bytes())
                        .collect::<String>()
                        .replace('+', "%20"),
                    None => continue,
                }
            }
            None => segment.to_owned(),
        };
        path.push('/');
        path.push_str(&expanded);
    }
    let mut url = base.clone();
    url.set_path(&path);
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_with_values_and_drop_missing_placeholders() {
        let base = Url::parse("http://h/_services/pipelines/?x=1").unwrap();
        let values = [
            ("area", "distributedtask".to_owned()),
            ("hubName", "my hub".to_owned()),
            ("planId", "p".to_owned()),
        ];
        let url = expand_route(
            &base,
            "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/x",
            &values,
        );
        assert_eq!(
            url.as_str(),
            "http://h/_services/pipelines/_apis/distributedtask/hubs/my%20hub/plans/p/x"
        );
    }

    #[test]
    fn location_lists_read_in_either_casing() {
        let json = r#"{"count":1,"Value":[{"Id":"27D7F831-88C1-4719-8CA1-6A061DAD90EB",
            "Area":"distributedtask","ResourceName":"actiondownloadinfo",
            "RouteTemplate":"_apis/v1/ActionDownloadInfo/{scopeIdentifier}/{hubName}/{planId}"}]}"#;
        let list: LocationList = serde_json::from_str(json).unwrap();
        assert_eq!(
            template_of(&list.value, "27d7f831-88c1-4719-8ca1-6a061dad90eb"),
            Some("_apis/v1/ActionDownloadInfo/{scopeIdentifier}/{hubName}/{planId}")
        );
        assert_eq!(template_of(&list.value, "other"), None);
    }
}
