//! One type for every provider client, so that a [`super::failover::Failover`] can hold any mix
//! of them, chosen at cold start from configuration.

use super::kdniao::KdniaoClient;
use super::kuaidi100::Kuaidi100Client;
use super::taobao::TaobaoClient;
use super::{ProviderError, TraceProvider, TraceQuery};
use crate::domain::TraceSnapshot;

pub enum AnyProvider {
    Kdniao(KdniaoClient),
    Kuaidi100(Kuaidi100Client),
    Taobao(TaobaoClient),
}

impl TraceProvider for AnyProvider {
    fn name(&self) -> &'static str {
        match self {
            AnyProvider::Kdniao(p) => p.name(),
            AnyProvider::Kuaidi100(p) => p.name(),
            AnyProvider::Taobao(p) => p.name(),
        }
    }

    async fn query(&self, q: &TraceQuery) -> Result<TraceSnapshot, ProviderError> {
        match self {
            AnyProvider::Kdniao(p) => p.query(q).await,
            AnyProvider::Kuaidi100(p) => p.query(q).await,
            AnyProvider::Taobao(p) => p.query(q).await,
        }
    }
}
