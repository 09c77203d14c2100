//! Which REST API and which scope a `--url` designates (pure).
//!
//! - github.com-hosted (host `github.com`, `www.github.com`, `github.localhost`, or ending in
//!   `.ghe.com` / `.ghe.localhost`, as `src/Runner.Sdk/Util/UrlUtil.cs`): the API is
//!   `{scheme}://api.{host}/` (`https://api.github.com/` for github.com).
//! - Anything else is a GitHub Enterprise Server: `{scheme}://{host[:port]}/api/v3/`, so
//!   `http://127.0.0.1:PORT/owner/repo` points at a local server.
//!
//! Path `/owner/repo` is a repository, `/org` an organisation, `/enterprises/slug` an
//! enterprise; anything else is refused.

use url::Url;

use super::ClientError;

/// What a runner registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerScope {
    /// A repository.
    Repository {
        /// Owner (user or organisation).
        owner: String,
        /// Repository name.
        repo: String,
    },
    /// An organisation.
    Organization {
        /// Organisation name.
        org: String,
    },
    /// An enterprise.
    Enterprise {
        /// Enterprise slug.
        slug: String,
    },
}

/// A parsed `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubUrl {
    /// The URL as given, normalised (no trailing slash).
    pub url: String,
    /// Repository, organisation or enterprise.
    pub scope: RunnerScope,
    /// Whether this is github.com (or a GHE.com data-residency host) rather than a GHES.
    pub hosted: bool,
    /// Base of the REST API, ending in `/`.
    pub api_base: Url,
}

impl GitHubUrl {
    /// Parses and classifies a repository, organisation or enterprise URL.
    pub fn parse(input: &str) -> Result<Self, ClientError> {
        let bad = |reason: &str| ClientError::InvalidUrl {
            url: input.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(input.trim()).map_err(|_| bad("not an absolute URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the scheme must be https (or http)"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| bad("the URL has no host"))?
            .to_ascii_lowercase();
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("the URL must not have a query or fragment"));
        }
        let segments: Vec<&str> = parsed.path().split('/').filter(|s| !s.is_empty()).collect();
        let scope = match segments.as_slice() {
            ["enterprises", slug] => RunnerScope::Enterprise {
                slug: (*slug).to_owned(),
            },
            [org] => RunnerScope::Organization {
                org: (*org).to_owned(),
            },
            [owner, repo] => RunnerScope::Repository {
                owner: (*owner).to_owned(),
                repo: repo.trim_end_matches(".git").to_owned(),
            },
            _ => {
                return Err(bad(
                    "expected a repository URL (https://HOST/OWNER/REPO) or an organisation URL \
                     (https://HOST/ORG)",
                ));
            }
        };
        let hosted = is_hosted(&host);
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let api = if hosted {
            let api_host = if host == "www.github.com" {
                "github.com"
            } else {
                host.as_str()
            };
            format!("{}://api.{api_host}{port}/", parsed.scheme())
        } else {
            format!("{}://{host}{port}/api/v3/", parsed.scheme())
        };
        let api_base = Url::parse(&api).map_err(|_| bad("cannot derive the API URL"))?;
        let url = format!("{}://{host}{port}/{}", parsed.scheme(), segments.join("/"));
        Ok(GitHubUrl {
            url,
            scope,
            hosted,
            api_base,
        })
    }

    /// `repos/{owner}/{repo}`, `orgs/{org}` or `enterprises/{slug}`.
    pub fn scope_path(&self) -> String {
        match &self.scope {
            RunnerScope::Repository { owner, repo } => format!("repos/{owner}/{repo}"),
            RunnerScope::Organization { org } => format!("orgs/{org}"),
            RunnerScope::Enterprise { slug } => format!("enterprises/{slug}"),
        }
    }

    /// An API URL: `api_base` + `path` (no leading slash).
    pub fn api(&self, path: &str) -> String {
        format!("{}{}", self.api_base, path.trim_start_matches('/'))
    }

    /// `{api}/{scope}/actions/{path}`, the runner-admin entity URL.
    pub fn entity(&self, path: &str) -> String {
        self.api(&format!(
            "{}/actions/{}",
            self.scope_path(),
            path.trim_start_matches('/')
        ))
    }

    /// `{api}/actions/runner-registration`.
    pub fn runner_registration_url(&self) -> String {
        self.api("actions/runner-registration")
    }

    /// `{api}/actions/runners/register`.
    pub fn runner_admin_register_url(&self) -> String {
        self.api("actions/runners/register")
    }

    /// The host of the URL (for the GHES tenant check).
    pub fn host(&self) -> Option<String> {
        Url::parse(&self.url).ok()?.host_str().map(str::to_owned)
    }
}

/// github.com-hosted detection (`UrlUtil.IsHostedServer`).
pub fn is_hosted(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    matches!(
        host.as_str(),
        "github.com" | "www.github.com" | "github.localhost"
    ) || host.ends_with(".ghe.com")
        || host.ends_with(".ghe.localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_com_repo_and_org() {
        let u = GitHubUrl::parse("https://github.com/octo/hello/").unwrap();
        assert!(u.hosted);
        assert_eq!(u.url, "https://github.com/octo/hello");
        assert_eq!(
            u.runner_registration_url(),
            "https://api.github.com/actions/runner-registration"
        );
        assert_eq!(
            u.entity("runner-groups"),
            "https://api.github.com/repos/octo/hello/actions/runner-groups"
        );
        let org = GitHubUrl::parse("https://www.github.com/octo").unwrap();
        assert_eq!(org.scope, RunnerScope::Organization { org: "octo".into() });
        assert_eq!(org.api_base.as_str(), "https://api.github.com/");
        let ghe = GitHubUrl::parse("https://acme.ghe.com/octo").unwrap();
        assert_eq!(ghe.api_base.as_str(), "https://api.acme.ghe.com/");
    }

    #[test]
    fn ghes_keeps_scheme_host_and_port() {
        let u = GitHubUrl::parse("http://127.0.0.1:8080/owner/repo").unwrap();
        assert!(!u.hosted);
        assert_eq!(u.api_base.as_str(), "http://127.0.0.1:8080/api/v3/");
        assert_eq!(
            u.runner_admin_register_url(),
            "http://127.0.0.1:8080/api/v3/actions/runners/register"
        );
        assert_eq!(u.scope_path(), "repos/owner/repo");
        let e = GitHubUrl::parse("https://ghes.example/enterprises/acme").unwrap();
        assert_eq!(e.scope_path(), "enterprises/acme");
        assert_eq!(
            e.entity("runners/4"),
            "https://ghes.example/api/v3/enterprises/acme/actions/runners/4"
        );
    }

    #[test]
    fn other_urls_are_refused_clearly() {
        for bad in [
            "https://github.com/",
            "https://github.com/a/b/c",
            "ftp://x/a",
            "nonsense",
            "https://github.com/a?x=1",
        ] {
            let err = GitHubUrl::parse(bad).unwrap_err();
            assert!(matches!(err, ClientError::InvalidUrl { .. }), "{bad}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
