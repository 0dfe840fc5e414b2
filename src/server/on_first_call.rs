//! A gRPC service built when it is first called rather than at start-up.
//!
//! Server reflection indexes the documented descriptor set (a megabyte of protos with their
//! comments), twice: once for `v1`, once for `v1alpha`. Most deployments call the gateway
//! through generated stubs and never ask for it, so an idle gateway should not hold it. The
//! first reflection call pays a few milliseconds to build it; later calls find it built.

use futures_util::future::{Either, Ready};
use std::convert::Infallible;
use std::fmt::Display;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tonic::server::NamedService;

/// Wraps a service constructor; the service is built once, by the first call to reach it.
pub struct BuiltOnFirstCall<S, F> {
    service: Arc<OnceLock<Result<S, String>>>,
    build: Arc<F>,
}

impl<S, F, E> BuiltOnFirstCall<S, F>
where
    F: Fn() -> Result<S, E>,
    E: Display,
{
    pub fn new(build: F) -> Self {
        BuiltOnFirstCall {
            service: Arc::new(OnceLock::new()),
            build: Arc::new(build),
        }
    }

    /// Whether a call has built the service yet.
    pub fn is_built(&self) -> bool {
        self.service.get().is_some()
    }

    /// The service, built now if no call has built it yet. A failed build is kept, reported
    /// to every caller, and not retried: the inputs are compiled into the binary, so a retry
    /// would fail the same way.
    fn get(&self) -> &Result<S, String> {
        self.service
            .get_or_init(|| (self.build)().map_err(|e| e.to_string()))
    }
}

impl<S, F> Clone for BuiltOnFirstCall<S, F> {
    fn clone(&self) -> Self {
        BuiltOnFirstCall {
            service: self.service.clone(),
            build: self.build.clone(),
        }
    }
}

impl<S: NamedService, F> NamedService for BuiltOnFirstCall<S, F> {
    const NAME: &'static str = S::NAME;
}

impl<S, F, E, B> tower::Service<http::Request<B>> for BuiltOnFirstCall<S, F>
where
    S: tower::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + NamedService,
    F: Fn() -> Result<S, E>,
    E: Display,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Self::Response, Infallible>>>;

    /// Always ready: the services wrapped here (tonic-generated servers) are always ready
    /// themselves, and readiness must not build the service before a call arrives.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.get() {
            Ok(service) => Either::Left(service.clone().call(request)),
            Err(e) => Either::Right(futures_util::future::ready(Ok(tonic::Status::internal(
                format!("{} could not be built: {e}", S::NAME),
            )
            .into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Service as _, ServiceExt as _};

    /// A service that answers 200 and names itself.
    #[derive(Clone)]
    struct Answering;

    impl NamedService for Answering {
        const NAME: &'static str = "test.Answering";
    }

    impl tower::Service<http::Request<()>> for Answering {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: http::Request<()>) -> Self::Future {
            futures_util::future::ready(Ok(http::Response::new(tonic::body::Body::empty())))
        }
    }

    #[tokio::test]
    async fn the_service_is_built_by_its_first_call_and_only_once() {
        let builds = Arc::new(AtomicUsize::new(0));
        let counter = builds.clone();
        let mut service = BuiltOnFirstCall::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Answering)
        });
        let mut other_handle = service.clone();
        assert!(!service.is_built());
        assert_eq!(builds.load(Ordering::SeqCst), 0, "not built at start");
        for _ in 0..3 {
            let answer = service
                .ready()
                .await
                .expect("ready")
                .call(http::Request::new(()))
                .await
                .expect("answer");
            assert_eq!(answer.status(), http::StatusCode::OK);
        }
        other_handle
            .call(http::Request::new(()))
            .await
            .expect("answer");
        assert!(service.is_built());
        assert_eq!(
            builds.load(Ordering::SeqCst),
            1,
            "built once, shared by clones"
        );
    }

    #[tokio::test]
    async fn a_failed_build_answers_internal_naming_the_service() {
        let mut service =
            BuiltOnFirstCall::new(|| Err::<Answering, _>("the descriptor set is corrupt"));
        let answer = service.call(http::Request::new(())).await.expect("answer");
        let status = tonic::Status::from_header_map(answer.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("test.Answering"), "{status:?}");
        assert!(status.message().contains("corrupt"), "{status:?}");
    }
}
