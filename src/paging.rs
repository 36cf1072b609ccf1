//! The one pager of the operator and the live audit: a LIST in pages (`limit` and
//! `continue`), each object handed over as its page arrives, so memory follows one page, not
//! the collection. kube-rs has no such helper outside its watcher (which also watches).

use kube::api::{Api, ListParams};

/// Objects per list request unless the caller's `params` set `limit`: small enough for a busy
/// API server, large enough for few calls (kubectl and client-go's informers use 500).
const PAGE: u32 = 500;

/// Lists every object `params` select, in pages, calling `each` for every object.
pub(crate) async fn for_each_page<K>(
    api: &Api<K>,
    params: &ListParams,
    mut each: impl FnMut(K),
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.clone();
    params.limit.get_or_insert(PAGE);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        page.items.into_iter().for_each(&mut each);
        match next {
            Some(token) => params.continue_token = Some(token),
            None => return Ok(()),
        }
    }
}
