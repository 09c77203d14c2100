use super::*;

#[test]
fn versions_parse_compare_and_print() {
    assert_eq!("2.336.0".parse(), Ok(Version::new(2, 336, 0)));
    assert_eq!("v2.337.1".parse(), Ok(Version::new(2, 337, 1)));
    assert_eq!(" 2.10.3 ".parse(), Ok(Version::new(2, 10, 3)));
    for bad in [
        "", "2", "2.3", "2.3.4.5", "2.x.0", "2.-1.0", "v", "2..0", "+2.3.4",
    ] {
        assert!(bad.parse::<Version>().is_err(), "{bad:?} accepted");
    }
    assert!(Version::new(2, 337, 0) > Version::new(2, 336, 9));
    assert!(
        Version::new(2, 99, 0) < Version::new(2, 100, 0),
        "numeric, not lexical"
    );
    assert_eq!(Version::new(2, 336, 0).to_string(), "2.336.0");
}

#[test]
fn the_setting_is_auto_or_a_version() {
    assert_eq!("auto".parse(), Ok(VersionSetting::Auto));
    assert_eq!("AUTO".parse(), Ok(VersionSetting::Auto));
    assert_eq!(
        "2.331.0".parse(),
        Ok(VersionSetting::Pinned(Version::new(2, 331, 0)))
    );
    assert!("latest".parse::<VersionSetting>().is_err());
    let yaml: VersionSetting = serde_yaml::from_str("2.335.1").unwrap();
    assert_eq!(yaml, VersionSetting::Pinned(Version::new(2, 335, 1)));
    assert_eq!(
        serde_yaml::to_string(&VersionSetting::Auto).unwrap().trim(),
        "auto"
    );
}

#[test]
fn the_baseline_has_a_release_date() {
    let released = baseline_released().expect("BASELINE_RELEASED parses");
    assert_eq!(released.format("%Y-%m-%d").to_string(), BASELINE_RELEASED);
}

#[tokio::test]
async fn auto_without_network_or_cache_advertises_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let config = VersionConfig {
        setting: VersionSetting::Auto,
        releases_url: DEFAULT_RELEASES_URL.into(),
        cache_dir: Some(dir.path().to_owned()),
    };
    let policy = VersionPolicy::resolve(config, None).await;
    let now = policy.current();
    assert_eq!(now.version, BASELINE);
    assert_eq!(now.source, VersionSource::Baseline);
    assert_eq!(now.released_at, baseline_released());
}

#[tokio::test]
async fn a_pinned_version_ignores_refresh_targets_and_rejections() {
    let policy = VersionPolicy::resolve(VersionConfig::pinned(Version::new(2, 331, 0)), None).await;
    assert_eq!(policy.current().source, VersionSource::Pinned);
    assert_eq!(policy.offer_target("2.400.0"), Version::new(2, 331, 0));
    assert_eq!(
        policy.after_rejection(Version::new(2, 331, 0)).await,
        AfterRejection::Stop
    );
    assert_eq!(policy.current().version, Version::new(2, 331, 0));
}

#[tokio::test]
async fn auto_takes_a_newer_refresh_target_only() {
    let config = VersionConfig {
        setting: VersionSetting::Auto,
        releases_url: DEFAULT_RELEASES_URL.into(),
        cache_dir: None,
    };
    let policy = VersionPolicy::resolve(config, None).await;
    assert_eq!(
        policy.offer_target("2.100.0"),
        BASELINE,
        "older target ignored"
    );
    assert_eq!(policy.offer_target("not a version"), BASELINE);
    let newer = Version::new(BASELINE.major, BASELINE.minor + 3, 0);
    assert_eq!(policy.offer_target(&newer.to_string()), newer);
    assert_eq!(policy.current().source, VersionSource::RefreshTarget);
}

#[tokio::test]
async fn a_fresh_cache_is_used_without_fetching_and_older_releases_lose_to_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let newer = Version::new(BASELINE.major, BASELINE.minor + 1, 2);
    let write = |version: Version, fetched_at: DateTime<Utc>| {
        let cached = CachedRelease {
            version,
            published_at: Some(fetched_at),
            fetched_at,
        };
        std::fs::write(
            dir.path().join(RELEASE_CACHE_FILE),
            serde_json::to_string(&cached).unwrap(),
        )
        .unwrap();
    };
    let auto = || VersionConfig {
        setting: VersionSetting::Auto,
        releases_url: "http://127.0.0.1:9/unreachable".into(),
        cache_dir: Some(dir.path().to_owned()),
    };
    write(newer, Utc::now());
    let http = crate::client::HttpClient::new().unwrap();
    let policy = VersionPolicy::resolve(auto(), Some(http.clone())).await;
    assert_eq!(policy.current().version, newer);
    assert_eq!(policy.current().source, VersionSource::Cache);
    // An older cached release than the baseline is never advertised.
    write(Version::new(2, 300, 0), Utc::now());
    let policy = VersionPolicy::resolve(auto(), Some(http)).await;
    assert_eq!(policy.current().version, BASELINE);
    // A corrupt cache is ignored.
    std::fs::write(dir.path().join(RELEASE_CACHE_FILE), "{not json").unwrap();
    assert!(read_cache(dir.path()).is_none());
}
