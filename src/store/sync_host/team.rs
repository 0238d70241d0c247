//! Team documents on a sync link: only another site of our own org may send one
//! (`SyncHost::visible` decides, for every read and write path of the host).

use parley_sync::{DocUpdate, StoreError as Refusal};

use super::SyncHost;

impl SyncHost<'_> {
    /// A team document from a peer: only another site of ours may send one.
    pub(super) fn store_team(&mut self, update: DocUpdate<'_>, id: u128) -> Result<(), Refusal> {
        if !self.visible(id) {
            return Err(Refusal::Rejected(
                "team documents stay within one org; a partner may not send one".into(),
            ));
        }
        if self.damaged.contains(&id) {
            return Err(Refusal::Rejected(
                "this team document is damaged on the receiving node".into(),
            ));
        }
        let added = self.check_size(&update, id, None)?;
        crate::store::team::check_received(id, update.after, self.now)
            .map_err(Refusal::Rejected)?;
        let base = match self.pending.team.iter().find(|(i, _, _)| *i == id) {
            Some((_, b, _)) => b.clone(),
            None => update.before.map(|b| b.get_heads()).unwrap_or_default(),
        };
        self.pending.team.retain(|(i, _, _)| *i != id);
        self.pending.team.push((id, base, update.after.clone()));
        self.pending.bytes += added;
        Ok(())
    }
}
