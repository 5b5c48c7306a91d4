//! `cstor-migrate`: legacy cStor pools to CStorPoolClusters and legacy volumes to CSI volumes (see `cstor_operators::migrate`).

use std::process::ExitCode;

use clap::Parser;
use cstor_api::{migration::MigrationTask, process};
use cstor_operators::{
    cli::{MigrateArgs, MigrateCommand},
    migrate::{Migrator, pool, volume},
};
use kube::Api;

#[tokio::main]
async fn main() -> ExitCode {
    process::init_tracing(false);
    let args = MigrateArgs::parse();
    process::exit("cstor-migrate", run(args).await)
}

async fn run(args: MigrateArgs) -> Result<(), String> {
    if args.openebs_namespace.is_empty() {
        return Err("Cannot execute migrate job: openebs namespace is missing".into());
    }
    if let MigrateCommand::Upgrade(up) = args.command {
        if args.dry_run {
            return Err("upgrade has no --dry-run".into());
        }
        cstor_operators::upgrade::validate(&args.openebs_namespace, &up)?;
        let client = process::kube_client().await?;
        let ns = &args.openebs_namespace;
        let deadline = std::time::Duration::from_secs(args.timeout_seconds);
        return cstor_operators::upgrade::run(client, ns, up, args.backoff_limit, deadline).await;
    }
    let client = process::kube_client().await?;
    let mut m = Migrator::new(client.clone(), &args.openebs_namespace);
    m.dry_run = args.dry_run;
    m.timeout = std::time::Duration::from_secs(args.timeout_seconds);
    let command = match args.command {
        MigrateCommand::Resource { name } => {
            let tasks: Api<MigrationTask> = Api::namespaced(client, &args.openebs_namespace);
            let task = tasks
                .get(&name)
                .await
                .map_err(|e| format!("MigrationTask {name}: {e}"))?;
            match (task.spec.cstor_pool, task.spec.cstor_volume) {
                (Some(p), _) => MigrateCommand::CstorSpc {
                    spc_name: p.spc_name,
                    cspc_name: p.rename,
                },
                (None, Some(v)) => MigrateCommand::CstorVolume { pv_name: v.pv_name },
                (None, None) => {
                    return Err(format!(
                        "MigrationTask {name}: neither spec.cstorPool nor spec.cstorVolume is set"
                    ));
                }
            }
        }
        other => other,
    };
    match command {
        MigrateCommand::CstorSpc {
            spc_name,
            cspc_name,
        } => migrate_pool(&m, &spc_name, cspc_name.as_deref(), args.backoff_limit).await,
        MigrateCommand::CstorVolume { pv_name } => {
            migrate_volume(&m, &pv_name, args.backoff_limit).await
        }
        MigrateCommand::Resource { .. } => unreachable!("resolved above"),
        MigrateCommand::Upgrade(_) => unreachable!("dispatched above"),
    }
}

async fn migrate_pool(
    m: &Migrator,
    spc: &str,
    cspc: Option<&str>,
    backoff_limit: i64,
) -> Result<(), String> {
    let outcome = pool::migrate(m, spc, cspc, backoff_limit)
        .await
        .map_err(|e| format!("{e:#}"))?;
    match outcome {
        pool::Outcome::Migrated => println!("spc {spc} migrated; migrate its volumes next"),
        pool::Outcome::AlreadyMigrated => println!("spc {spc} was already migrated"),
        pool::Outcome::DryRun(cspc) => {
            println!("dry run: the checks passed; this CStorPoolCluster would be created:");
            println!(
                "{}",
                serde_yaml::to_string(&*cspc).map_err(|e| e.to_string())?
            );
        }
    }
    Ok(())
}

async fn migrate_volume(m: &Migrator, pv: &str, backoff_limit: i64) -> Result<(), String> {
    let outcome = volume::migrate(m, pv, backoff_limit)
        .await
        .map_err(|e| format!("{e:#}"))?;
    match outcome {
        volume::Outcome::Migrated => println!("volume {pv} migrated"),
        volume::Outcome::AlreadyMigrated => println!("volume {pv} was already migrated"),
        volume::Outcome::DryRun(plan) => {
            println!("dry run: the checks passed; these objects would be written:");
            println!("{}", plan.to_yaml().map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}
