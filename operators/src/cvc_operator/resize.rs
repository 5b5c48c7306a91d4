//! Resize: CVC `spec.capacity` → CV `spec.capacity` → (volume manager) target; done
//! when the CV's `status.capacity` reaches the size. Shrinking is ignored.

use cstor_api::cstor::{CStorVolumeConfig, volume_config_conditions};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::events::EventType;

use super::{Context, Error, pv_name, status};

/// Bytes of a Kubernetes quantity (the shared parser, `cstor_api::quantity`); `None` when
/// unparsable or too large.
pub fn bytes(q: &Quantity) -> Option<u64> {
    cstor_api::quantity::bytes_of(q)
}

fn storage(list: Option<&cstor_api::cstor::ResourceList>) -> Option<Quantity> {
    list.and_then(|l| l.get("storage")).cloned()
}

/// One resize step for a bound CVC.
pub async fn sync(cvc: &mut CStorVolumeConfig, ctx: &Context) -> Result<(), Error> {
    let Some(desired) = storage(Some(&cvc.spec.capacity)) else {
        return Ok(());
    };
    let current = storage(cvc.status.capacity.as_ref());
    let (Some(want), Some(have)) = (bytes(&desired), current.as_ref().and_then(bytes)) else {
        return Ok(());
    };
    if want <= have {
        return Ok(());
    }
    let pv = pv_name(cvc);
    let cv = super::bound_cv(ctx, &pv).await?;
    let cv_spec = cv.spec.capacity.as_ref().and_then(bytes);
    let cv_status = cv
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(bytes);
    if cv_status == Some(want) {
        cvc.status.capacity = Some(cvc.spec.capacity.clone());
        status::clear_condition(cvc, volume_config_conditions::RESIZING);
        status::clear_condition(cvc, volume_config_conditions::VOLUME_RESIZE_PENDING);
        status::replace_cvc(cvc, ctx).await?;
        ctx.event(
            cvc,
            EventType::Normal,
            "VolumeResizeSuccessful",
            "Resize volume succeeded",
        )
        .await;
        return Ok(());
    }
    if cv_spec == Some(want) || matches!((cv_spec, cv_status), (Some(s), Some(st)) if s > st) {
        // The target is working on it; a CV update wakes us when it is done.
        if status::condition(cvc, volume_config_conditions::RESIZING).is_none() {
            ctx.event(
                cvc,
                EventType::Normal,
                "Resizing",
                format!("Resize already in progress {pv}"),
            )
            .await;
        }
        return Ok(());
    }
    status::set_condition(
        cvc,
        volume_config_conditions::RESIZING,
        "Resizing",
        &format!(
            "resizing volume from {} to {}: waiting for the target to apply the new size",
            current.map(|q| q.0).unwrap_or_default(),
            desired.0
        ),
    );
    status::replace_cvc(cvc, ctx).await?;
    ctx.event(
        cvc,
        EventType::Normal,
        "Resizing",
        format!("CVCController is resizing volume {pv}"),
    )
    .await;
    let patch = serde_json::json!({"spec": {"capacity": desired}});
    if let Err(e) = super::patch_cv(ctx, &pv, patch).await {
        ctx.event(
            cvc,
            EventType::Warning,
            "VolumeResizeFailed",
            format!("failed to set the new size on CStorVolume {pv}: {e}"),
        )
        .await;
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let q = |s: &str| bytes(&Quantity(s.into()));
        assert_eq!(q("5Gi"), Some(5 << 30));
        assert_eq!(q("1.5Gi"), Some(3 << 29));
        assert_eq!(q("10G"), Some(10_000_000_000));
        assert_eq!(q("1024"), Some(1024));
        assert_eq!(q("5Xi"), None);
        assert!(q("6Gi") > q("5Gi"));
    }
}
