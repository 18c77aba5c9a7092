use super::*;
use crate::config::load::test_parse_with_env;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<AuditConfig, Vec<String>> {
    test_parse_with_env(text, env).map(|c| c.audit)
}

#[test]
fn absent_section_is_off_and_present_section_defaults_to_sqlite() {
    assert!(!parse("", &[]).unwrap().enabled());
    let a = parse("[audit]\n", &[]).unwrap();
    assert!(matches!(
        a.local,
        LocalStore::Sqlite {
            retention_days: 30,
            ..
        }
    ));
    assert!(a.production.is_none());
}

#[test]
fn env_overrides_the_file() {
    let a = parse(
        "[audit]\nproduction = \"kafka\"\n[audit.kafka]\nbootstrap_servers = [\"a:1\"]\n",
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", "b:2, c:3"),
            ("KAFKA_TOPIC", "t"),
            ("ENABLE_LOCAL_LOGGING", "false"),
            ("LOG_RETRY_ATTEMPTS", "7"),
            ("LOG_RETRY_DELAY_MS", "15"),
        ],
    )
    .unwrap();
    assert_eq!(a.local, LocalStore::None);
    assert_eq!(a.retry_attempts, 7);
    assert_eq!(a.retry_delay, Duration::from_millis(15));
    assert_eq!(
        a.production,
        Some(Production::Kafka {
            bootstrap_servers: vec!["b:2".into(), "c:3".into()],
            topic: "t".into(),
            partitions: 1
        })
    );
    let a = parse(
        "",
        &[
            ("ENABLE_PRODUCTION_LOGGING", "true"),
            ("LOG_DESTINATION_TYPE", "convex"),
            ("CONVEX_ENDPOINT_URL", "http://127.0.0.1:1/ingest"),
            ("CONVEX_API_KEY", "k"),
        ],
    )
    .unwrap();
    assert!(matches!(a.production, Some(Production::Http { .. })));
}

#[test]
fn production_without_destination_names_what_is_missing() {
    let e = parse("", &[("ENABLE_PRODUCTION_LOGGING", "true")]).unwrap_err();
    assert!(e[0].contains("LOG_DESTINATION_TYPE"), "{e:?}");
    let e = parse("[audit]\nproduction = \"kafka\"\n", &[]).unwrap_err();
    assert!(e[0].starts_with("g.toml:2:14:"), "{e:?}");
    assert!(e[0].contains("bootstrap_servers"), "{e:?}");
    let e = parse("", &[("LOG_DESTINATION_TYPE", "elasticsearch")]).unwrap_err();
    assert!(e[0].contains("ELASTICSEARCH_HOSTS"), "{e:?}");
    let e = parse("[audit]\nlocal = \"mongo\"\nqueue_size = 0\n", &[]).unwrap_err();
    assert_eq!(e.len(), 2, "{e:?}");
}
