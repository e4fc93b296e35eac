//! Every container the renderer writes runs a binary of the image with arguments it accepts,
//! and every environment variable it sets is one that binary (or a library it uses) reads: a
//! wrong flag or env name in a manifest fails here, not on a cluster.

use clap::CommandFactory;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Container;
use knmstate_api::v1::NMStateSpec;
use knmstate_deploy::{InstallSettings, Installation, operator, render};

/// Read by libraries rather than by flags: `tracing`'s filter and zbus' system bus address.
const LIBRARY_ENV: [&str; 2] = ["RUST_LOG", "DBUS_SYSTEM_BUS_ADDRESS"];

/// The env names a command (and its subcommands) reads.
fn env_names(cmd: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(env_names(sub));
    }
    names
}

fn command_of(binary: &str) -> clap::Command {
    match binary {
        "/usr/bin/handler" => knmstate_handler::Cli::command(),
        "/usr/bin/knmstate-controller" => knmstate_controller::cli::Args::command(),
        "/usr/bin/knmstate-webhook" => knmstate_webhook::cli::Args::command(),
        other => panic!("no binary {other} in the image"),
    }
}

fn containers(i: &Installation) -> Vec<Container> {
    let pods = i
        .of::<DaemonSet>()
        .into_iter()
        .filter_map(|d| d.spec.template.spec.clone())
        .chain(
            i.of::<Deployment>()
                .into_iter()
                .filter_map(|d| d.spec.template.spec.clone()),
        );
    pods.flat_map(|p| p.containers).collect()
}

fn check(c: &Container) {
    let binary = c
        .command
        .as_ref()
        .and_then(|c| c.first())
        .expect("a command");
    let cmd = command_of(binary);
    let args = std::iter::once(binary.clone()).chain(c.args.clone().unwrap_or_default());
    if let Err(e) = cmd.clone().try_get_matches_from(args) {
        panic!("{}: {binary} refuses its arguments: {e}", c.name);
    }
    let known = env_names(&cmd);
    for e in c.env.iter().flatten() {
        assert!(
            known.contains(&e.name) || LIBRARY_ENV.contains(&e.name.as_str()),
            "{}: {binary} reads no {}",
            c.name,
            e.name
        );
    }
}

#[test]
fn every_rendered_container_runs_a_binary_with_flags_and_env_it_reads() {
    let settings = InstallSettings::default();
    let installation = render(&NMStateSpec::default(), &settings).unwrap();
    let bundle = operator::bundle(&installation, &settings);
    let all: Vec<Container> = containers(&installation)
        .into_iter()
        .chain(containers(&bundle))
        .collect();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "nmstate-handler",
            "nmstate-controller",
            "nmstate-webhook",
            "nmstate-operator"
        ]
    );
    for c in &all {
        check(c);
    }
}

#[test]
fn container_ports_are_the_ones_the_binaries_listen_on() {
    let settings = InstallSettings::default();
    let installation = render(&NMStateSpec::default(), &settings).unwrap();
    let bundle = operator::bundle(&installation, &settings);
    let port_of = |c: &Container| c.ports.as_ref().map(|p| p[0].container_port);
    let env_of = |c: &Container, name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    for c in containers(&installation).iter().chain(&containers(&bundle)) {
        match c.name.as_str() {
            "nmstate-controller" => {
                let addr = env_of(c, "METRICS_BIND_ADDRESS").unwrap();
                assert!(
                    addr.ends_with(&format!(":{}", port_of(c).unwrap())),
                    "{addr}"
                );
            }
            "nmstate-operator" => {
                let addr = env_of(c, "HEALTH_BIND_ADDRESS").unwrap();
                assert!(
                    addr.ends_with(&format!(":{}", port_of(c).unwrap())),
                    "{addr}"
                );
            }
            "nmstate-webhook" => {
                let default = knmstate_webhook::cli::Args::command()
                    .get_arguments()
                    .find(|a| a.get_id() == "listen")
                    .and_then(|a| a.get_default_values().first().cloned())
                    .unwrap();
                let port = port_of(c).unwrap();
                assert!(default.to_string_lossy().ends_with(&format!(":{port}")));
            }
            "nmstate-handler" => assert_eq!(port_of(c), None, "host network: no port"),
            other => panic!("unexpected container {other}"),
        }
    }
}
