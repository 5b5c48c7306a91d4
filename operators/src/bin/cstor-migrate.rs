//! `cstor-migrate`: legacy cStor pools to CStorPoolClusters (see `cstor_operators::migrate`).

use std::process::ExitCode;

use clap::Parser;
use cstor_api::{migration::MigrationTask, process};
use cstor_operators::{
    cli::{MigrateArgs, MigrateCommand},
    migrate::{Migrator, pool},
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
        return cstor_operators::upgrade::run(client, ns, up, args.backoff_limit).await;
    }
    let client = process::kube_client().await?;
    let mut m = Migrator::new(client.clone(), &args.openebs_namespace);
    m.dry_run = args.dry_run;
    let (spc, cspc) = match args.command {
        MigrateCommand::CstorSpc {
            spc_name,
            cspc_name,
        } => (spc_name, cspc_name),
        MigrateCommand::Upgrade(_) => unreachable!("dispatched above"),
        MigrateCommand::Resource { name } => {
            let tasks: Api<MigrationTask> = Api::namespaced(client, &args.openebs_namespace);
            let task = tasks
                .get(&name)
                .await
                .map_err(|e| format!("MigrationTask {name}: {e}"))?;
            match task.spec.cstor_pool {
                Some(p) => (p.spc_name, p.rename),
                None => {
                    return Err(format!(
                        "MigrationTask {name}: spec.cstorPool is missing (volume migration is not supported by this version)"
                    ));
                }
            }
        }
    };
    let outcome = pool::migrate(&m, &spc, cspc.as_deref(), args.backoff_limit)
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
