//! docker-compose.yml and the Dockerfiles, checked against the services' real configuration
//! code: there is no Docker engine here, so the files are parsed and their settings loaded.

use std::path::{Path, PathBuf};

use scheduler::config::Config;
use service_kit::config::{Overrides, load_from};
use yaml_serde::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    yaml_serde::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn environment(service: &Value) -> Vec<(String, String)> {
    let Some(env) = service.get("environment") else {
        return Vec::new();
    };
    env.as_mapping()
        .expect("environment is a mapping")
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("unsupported environment value {other:?}"),
            };
            (k.as_str().unwrap().to_string(), value)
        })
        .collect()
}

#[test]
fn compose_brings_up_postgres_redis_and_both_services_with_health_checks() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    for name in ["postgres", "redis", "scheduler", "device-runner"] {
        let service = &compose["services"][name];
        assert!(service.is_mapping(), "service {name} is defined");
        let test = &service["healthcheck"]["test"];
        assert!(
            test.is_sequence() && !test.as_sequence().unwrap().is_empty(),
            "{name} has a health check"
        );
    }
    assert_eq!(services.len(), 4);
    let scheduler = &compose["services"]["scheduler"];
    assert_eq!(
        scheduler["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    let dockerfile = scheduler["build"]["dockerfile"].as_str().unwrap();
    assert!(root().join(dockerfile).is_file(), "{dockerfile} exists");
    let health = scheduler["healthcheck"]["test"].as_sequence().unwrap();
    assert!(
        health
            .iter()
            .any(|part| part.as_str().is_some_and(|s| s.ends_with("/health_check")))
    );
}

#[test]
fn the_scheduler_environment_in_compose_is_valid_configuration() {
    let compose = compose();
    let scheduler = &compose["services"]["scheduler"];
    let env = environment(scheduler);
    for (key, _) in &env {
        assert!(
            key.starts_with("SCHEDULER__") || key == "DIRECT_URL" || key == "DATABASE_URL",
            "{key} is a scheduler setting"
        );
    }
    // The same loader the binary uses: unknown keys or bad values fail here as they would at start.
    let overrides = Overrides {
        config_file: Some(root().join("deploy/scheduler.example.toml")),
        ..Default::default()
    };
    let config = load_from::<Config>(&overrides, &env).expect("compose's environment is accepted");
    assert_eq!(
        config.server.host.to_string(),
        "0.0.0.0",
        "reachable from other containers"
    );
    assert!(
        config.auth.token.is_some() && config.auth.admin_token.is_some() && !config.auth.disabled,
        "beyond loopback the scheduler needs its tokens"
    );
    assert!(
        config.database.url.starts_with("postgresql://")
            && config.database.url.contains("@postgres:5432/")
    );
    assert!(config.database.url.ends_with("?schema=scheduler"));
    assert_eq!(
        config.redis.url.as_deref(),
        Some("redis://redis:6379"),
        "redis_publish targets publish on compose's Redis"
    );
    let published: Vec<String> = scheduler["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        published,
        [format!("{0}:{0}", config.server.port)],
        "the published port is the configured one"
    );
    let pg = environment(&compose["services"]["postgres"]);
    let credential = |k: &str| pg.iter().find(|(key, _)| key == k).unwrap().1.clone();
    let expected = format!(
        "{}:{}@postgres:5432/{}",
        credential("POSTGRES_USER"),
        credential("POSTGRES_PASSWORD"),
        credential("POSTGRES_DB")
    );
    assert!(
        config.database.url.contains(&expected),
        "the URL matches the postgres service's credentials"
    );
}

#[test]
fn the_example_config_is_the_default_configuration() {
    let overrides = Overrides {
        config_file: Some(root().join("deploy/scheduler.example.toml")),
        ..Default::default()
    };
    assert_eq!(
        load_from::<Config>(&overrides, &[]).unwrap(),
        Config::default(),
        "the example documents the defaults"
    );
}

#[test]
fn the_device_runner_example_config_is_its_default_configuration() {
    let overrides = Overrides {
        config_file: Some(root().join("deploy/device-runner.example.toml")),
        ..Default::default()
    };
    assert_eq!(
        load_from::<device_runner::config::Config>(&overrides, &[]).unwrap(),
        device_runner::config::Config::default(),
        "the example documents the defaults"
    );
}

#[test]
fn the_dockerfile_builds_and_runs_the_scheduler_binary() {
    let text = std::fs::read_to_string(root().join("deploy/scheduler.Dockerfile")).unwrap();
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(i, rest)| (i.to_uppercase(), rest.to_string()))
        })
        .collect();
    let of = |name: &str| {
        instructions
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("FROM").len(),
        2,
        "a build stage and a slim runtime stage"
    );
    assert!(
        of("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked -p scheduler"))
    );
    assert!(
        of("COPY")
            .iter()
            .any(|r| r.contains("--from=build /src/target/release/scheduler"))
    );
    assert_eq!(of("EXPOSE"), [Config::default().server.port.to_string()]);
    assert_eq!(of("ENTRYPOINT"), [r#"["/usr/local/bin/scheduler"]"#]);
    assert!(
        of("USER").iter().all(|u| u != "root"),
        "does not run as root"
    );
    let env_lines = of("ENV");
    let env: Vec<(String, String)> = env_lines
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    // The image listens on 0.0.0.0, so it starts only once it is given a token (or told
    // explicitly to serve without one).
    let refused = load_from::<Config>(&Overrides::default(), &env).unwrap_err();
    assert!(
        format!("{refused:#}").contains("auth.token is not set"),
        "{refused:#}"
    );
    let mut with_token = env.clone();
    with_token.push(("SCHEDULER__AUTH__TOKEN".into(), "t".into()));
    load_from::<Config>(&Overrides::default(), &with_token)
        .expect("the image's environment with a token is valid configuration");
}

#[test]
fn the_device_runner_in_compose_is_valid_configuration_with_a_health_check() {
    let compose = compose();
    let runner = &compose["services"]["device-runner"];
    let env = environment(runner);
    for (key, _) in &env {
        assert!(
            key.starts_with("DEVICE_RUNNER__"),
            "{key} is a device-runner setting"
        );
    }
    let overrides = Overrides::default();
    let config = load_from::<device_runner::config::Config>(&overrides, &env)
        .expect("the compose environment is a valid device-runner configuration");
    assert_eq!(config.server.port, 8004);
    assert!(config.database.url.ends_with("?schema=device_runner"));
    assert!(
        config.auth.token.is_some() && config.auth.admin_token.is_some() && !config.auth.disabled,
        "beyond loopback the runner needs its tokens"
    );
    let mut without_tokens = env.clone();
    without_tokens.retain(|(key, _)| !key.starts_with("DEVICE_RUNNER__AUTH__"));
    let refused = load_from::<device_runner::config::Config>(&overrides, &without_tokens)
        .expect_err("without tokens the runner refuses to listen beyond loopback");
    assert!(
        format!("{refused:#}").contains("auth.token is not set"),
        "{refused:#}"
    );
    let health = runner["healthcheck"]["test"].as_sequence().unwrap();
    assert!(
        health
            .iter()
            .any(|part| part.as_str() == Some("http://127.0.0.1:8004/health_check"))
    );
    let dockerfile = runner["build"]["dockerfile"].as_str().unwrap();
    let text = std::fs::read_to_string(root().join(dockerfile)).unwrap();
    assert!(text.contains("cargo build --release --locked -p device-runner"));
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/device-runner"]"#));
    // The image listens on 0.0.0.0, so, like the scheduler's, it starts only with a token.
    let image_env: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| line.strip_prefix("ENV "))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        image_env
            .iter()
            .any(|(k, v)| k == "DEVICE_RUNNER__SERVER__HOST" && v == "0.0.0.0")
    );
    let refused = load_from::<device_runner::config::Config>(&Overrides::default(), &image_env)
        .expect_err("the image does not start without a token");
    assert!(
        format!("{refused:#}").contains("auth.token is not set"),
        "{refused:#}"
    );
    let mut with_token = image_env.clone();
    with_token.push(("DEVICE_RUNNER__AUTH__TOKEN".into(), "t".into()));
    load_from::<device_runner::config::Config>(&Overrides::default(), &with_token)
        .expect("the image's environment with a token is valid configuration");
    assert!(text.contains("EXPOSE 8004"));
}
