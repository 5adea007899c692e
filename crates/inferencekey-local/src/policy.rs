//! Validation of `execution_policy` and `execution_policy_config` (PROTOCOL.md §3.2).
//!
//! The check always runs on the pair the workload will hold after the request, so a
//! PATCH that changes only the policy kind is judged against the stored config.

use serde_json::{Map, Value};

/// Checks a policy kind against its configuration; the error is a human message.
pub(crate) fn validate(policy: Option<&str>, config: Option<&Value>) -> Result<(), String> {
    let config = match config {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return Err("execution_policy_config must be an object or null".into()),
    };
    match policy {
        None => Ok(()),
        Some("fixed") => match config {
            None => Ok(()),
            Some(map) => fixed(map),
        },
        Some("scheduled") => scheduled(config.ok_or(
            "execution_policy 'scheduled' needs an execution_policy_config with `cron` or `window`",
        )?),
        Some("autoscaling") => autoscaling(config.ok_or(
            "execution_policy 'autoscaling' needs an execution_policy_config with \
             `min_workers`, `max_workers` and `workers`",
        )?),
        Some(other) => Err(format!(
            "unknown execution_policy '{other}'; expected fixed, scheduled or autoscaling"
        )),
    }
}

fn fixed(map: &Map<String, Value>) -> Result<(), String> {
    match map.get("replicas") {
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => Ok(()),
        Some(_) => Err("execution_policy_config.replicas must be an integer >= 1".into()),
        None => {
            Err("execution_policy 'fixed' needs execution_policy_config {\"replicas\": N}".into())
        }
    }
}

fn scheduled(map: &Map<String, Value>) -> Result<(), String> {
    match (map.get("cron"), map.get("window")) {
        (Some(_), Some(_)) => {
            Err("execution_policy_config takes either `cron` or `window`, not both".into())
        }
        (Some(Value::String(cron)), None) => {
            if cron.split_whitespace().count() == 5 {
                Ok(())
            } else {
                Err(format!(
                    "execution_policy_config.cron '{cron}' must have five fields, e.g. \"30 3 * * *\""
                ))
            }
        }
        (None, Some(Value::String(window))) if !window.trim().is_empty() => Ok(()),
        (Some(_), None) => Err("execution_policy_config.cron must be a string".into()),
        (None, Some(_)) => Err("execution_policy_config.window must be a non-empty string".into()),
        (None, None) => {
            Err("execution_policy 'scheduled' needs execution_policy_config.cron or .window".into())
        }
    }
}

fn autoscaling(map: &Map<String, Value>) -> Result<(), String> {
    let count = |field: &str| -> Result<u64, String> {
        map.get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("execution_policy_config.{field} must be an integer >= 0"))
    };
    let min = count("min_workers")?;
    let max = count("max_workers")?;
    if max < min.max(1) {
        return Err(format!(
            "execution_policy_config.max_workers ({max}) must be >= 1 and >= min_workers ({min})"
        ));
    }
    let workers = map
        .get("workers")
        .and_then(Value::as_object)
        .ok_or("execution_policy_config.workers must be an object with a `source`")?;
    match workers.get("source").and_then(Value::as_str) {
        Some("cloud") => {
            let pool = workers
                .get("cloud_pool")
                .and_then(Value::as_object)
                .ok_or("cloud workers need execution_policy_config.workers.cloud_pool")?;
            let gpus = pool.get("gpu_pool").and_then(Value::as_array);
            if !gpus.is_some_and(|g| !g.is_empty() && g.iter().all(Value::is_string)) {
                return Err(
                    "workers.cloud_pool.gpu_pool must be a non-empty list of GPU names".into(),
                );
            }
            let costs = [
                map.get("max_hourly_cost_usd"),
                pool.get("max_hourly_cost_usd"),
            ];
            if costs.iter().all(Option::is_none) {
                return Err("cloud autoscaling needs max_hourly_cost_usd > 0".into());
            }
            for cost in costs.into_iter().flatten() {
                if !cost.as_f64().is_some_and(|c| c > 0.0) {
                    return Err("max_hourly_cost_usd must be a number > 0".into());
                }
            }
            Ok(())
        }
        Some("private") => {
            let ids = workers.get("private_worker_ids").and_then(Value::as_array);
            if ids.is_some_and(|i| !i.is_empty() && i.iter().all(Value::is_string)) {
                Ok(())
            } else {
                Err("workers.private_worker_ids must be a non-empty list of worker ids".into())
            }
        }
        _ => Err("execution_policy_config.workers.source must be 'cloud' or 'private'".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    #[test]
    fn shapes_of_the_protocol() {
        assert!(validate(Some("fixed"), Some(&json!({"replicas": 1}))).is_ok());
        assert!(validate(Some("fixed"), None).is_ok());
        assert!(validate(Some("fixed"), Some(&json!({"replicas": 0}))).is_err());
        assert!(validate(Some("scheduled"), Some(&json!({"cron": "30 3 * * *"}))).is_ok());
        assert!(
            validate(
                Some("scheduled"),
                Some(&json!({"window": "Mon-Fri 09:00-18:00 Europe/Paris"}))
            )
            .is_ok()
        );
        assert!(validate(Some("scheduled"), Some(&json!({"replicas": 1}))).is_err());
        let cloud = json!({"min_workers": 0, "max_workers": 3, "max_hourly_cost_usd": 4.0,
            "workers": {"source": "cloud", "cloud_pool": {"gpu_pool": ["NVIDIA L40S"],
            "max_hourly_cost_usd": 4.0, "max_instances": 3, "allowed_cuda_versions": ["12.4"]}}});
        assert!(validate(Some("autoscaling"), Some(&cloud)).is_ok());
        let mut no_gpu = cloud.clone();
        no_gpu["workers"]["cloud_pool"]["gpu_pool"] = json!([]);
        assert!(validate(Some("autoscaling"), Some(&no_gpu)).is_err());
        let mut free = cloud.clone();
        free["max_hourly_cost_usd"] = json!(0);
        assert!(validate(Some("autoscaling"), Some(&free)).is_err());
        let private = json!({"min_workers": 1, "max_workers": 2,
            "workers": {"source": "private", "private_worker_ids": ["wrk_41aa"]}});
        assert!(validate(Some("autoscaling"), Some(&private)).is_ok());
        assert!(validate(Some("elastic"), None).is_err());
        assert!(validate(None, Some(&json!(3))).is_err());
    }
}
