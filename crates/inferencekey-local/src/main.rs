//! `inferencekey-local`: runs the platform emulator in the foreground.

use std::process::ExitCode;

use inferencekey_local::{LocalConfig, LocalPlatform, ReadinessTimings};

const USAGE: &str = "\
usage: inferencekey-local [options]

  --port PORT            port on 127.0.0.1 (default: a free one)
  --project SLUG         project to create (default: demo)
  --state FILE           load and persist workloads and tokens in FILE
  --upstream SLUG=URL    serve workload SLUG from an OpenAI-compatible server
                         (URL up to and including /v1); repeatable
  --upstream-key-env SLUG=VAR
                         send the bearer token held in environment variable VAR
                         to the upstream of workload SLUG; repeatable
  --readiness MODE       instant or demo (default: demo)
  --run-commands         run the config.command of llamacpp, vllm, sglang and
                         ollama workloads on this machine and serve from them
  --print-env            print export lines for INFERENCEKEY_* once listening
  -h, --help             this help
";

fn parse_args(args: impl Iterator<Item = String>) -> Result<(LocalConfig, bool), String> {
    let mut config = LocalConfig::default();
    let mut print_env = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                config.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port needs a number between 0 and 65535".to_owned())?;
            }
            "--project" => config.project = value("--project")?,
            "--state" => config.state_file = Some(value("--state")?.into()),
            "--upstream" => {
                let spec = value("--upstream")?;
                let (slug, url) = spec.split_once('=').ok_or("--upstream takes SLUG=URL")?;
                config.upstreams.insert(slug.to_owned(), url.to_owned());
            }
            "--upstream-key-env" => {
                let spec = value("--upstream-key-env")?;
                let (slug, var) = spec
                    .split_once('=')
                    .ok_or("--upstream-key-env takes SLUG=VAR")?;
                // Read from the environment so the secret never sits in the process list.
                let key = std::env::var(var)
                    .map_err(|_| format!("environment variable {var} is not set"))?;
                config.upstream_api_keys.insert(slug.to_owned(), key);
            }
            "--readiness" => {
                config.readiness = match value("--readiness")?.as_str() {
                    "instant" => ReadinessTimings::instant(),
                    "demo" => ReadinessTimings::demo(),
                    other => return Err(format!("--readiness takes instant or demo, not {other}")),
                };
            }
            "--print-env" => print_env = true,
            "--run-commands" => config.run_commands = true,
            // Deliberately undocumented: the fault header is for test suites only.
            "--enable-faults" => config.enable_faults = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((config, print_env))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let (config, print_env) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("inferencekey-local: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,inferencekey_local=debug")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let platform = match LocalPlatform::start(config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("inferencekey-local: {e}");
            return ExitCode::FAILURE;
        }
    };
    if print_env {
        // The only place the emulator prints secrets, on request, for `eval`.
        println!("export INFERENCEKEY_BASE_URL={}", platform.base_url());
        println!("export INFERENCEKEY_PROJECT={}", platform.project());
        println!("export INFERENCEKEY_SDK_TOKEN={}", platform.sdk_token());
        println!("export INFERENCEKEY_API_KEY={}", platform.api_key());
    } else {
        eprintln!(
            "local InferenceKey platform on {} (project {}); Ctrl-C to stop",
            platform.base_url(),
            platform.project()
        );
    }
    wait_for_signal().await;
    platform.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    #[test]
    fn arguments() {
        let args = [
            "--port",
            "0",
            "--project=orbit",
            "--upstream",
            "chat=http://127.0.0.1:9/v1",
            "--readiness",
            "instant",
            "--print-env",
            "--state",
            "s.json",
        ];
        let (config, print_env) = parse_args(args.iter().map(|s| (*s).to_owned())).unwrap();
        assert!(print_env);
        assert_eq!(config.project, "orbit");
        assert_eq!(config.upstreams["chat"], "http://127.0.0.1:9/v1");
        assert!(config.state_file.is_some());
        assert!(!config.enable_faults);
        assert!(!config.run_commands);
        assert!(parse_args(["--bogus".to_owned()].into_iter()).is_err());
        assert!(parse_args(["--port".to_owned()].into_iter()).is_err());
        let missing = [
            "--upstream-key-env",
            "chat=IK_TEST_VARIABLE_THAT_IS_NOT_SET",
        ];
        assert!(parse_args(missing.iter().map(|s| (*s).to_owned())).is_err());
        let (config, _) = parse_args(["--enable-faults".to_owned()].into_iter()).unwrap();
        assert!(config.enable_faults);
        let (config, _) = parse_args(["--run-commands".to_owned()].into_iter()).unwrap();
        assert!(config.run_commands);
    }
}
