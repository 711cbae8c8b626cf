//! [`RateLimitMiddleware`]: the service the middleware wraps around yours.

use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, forward_ready};
use ratelimit_core::http::{Gate, Passage};

use crate::fields::Fields;
use crate::future::ResponseFuture;
use crate::request::ActixRequest;
use crate::settings::Settings;

/// Rate limits requests before they reach `S`. Built by
/// [`RateLimit`](crate::RateLimit).
///
/// As in the tower layer, a store that answers in place (the in-memory one)
/// is decided inside `call`: an admitted request is the inner service's own
/// future plus the headers. A store that must be awaited (Redis) runs in one
/// boxed future, never longer than the limiter's timeout.
#[derive(Debug)]
pub struct RateLimitMiddleware<S> {
    service: Rc<S>,
    settings: Arc<Settings>,
}

impl<S> RateLimitMiddleware<S> {
    pub(crate) fn new(service: Rc<S>, settings: Arc<Settings>) -> Self {
        Self { service, settings }
    }
}

impl<S, B> Service<ServiceRequest> for RateLimitMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let settings = &self.settings;
        let gate = &settings.gate;
        // The view borrows the request (and its extensions) until the check
        // is decided; it goes before the request moves on.
        let view = ActixRequest::new(request.request());
        let entry = match gate.entry(&view) {
            Ok(entry) => entry,
            Err(error) => {
                let response = settings.missing_key(&error);
                drop(view);
                return ResponseFuture::ready(Ok(request
                    .into_response(response)
                    .map_into_right_body()));
            }
        };
        let passage = match gate.try_pass::<Fields<'_>>(&entry) {
            Ok(passage) => passage,
            Err(pending) => {
                // A store that must be awaited (Redis): the check, with what
                // the attempt prepared, then the inner call, in one boxed
                // future.
                drop(view);
                let service = Rc::clone(&self.service);
                let settings = Arc::clone(&self.settings);
                return ResponseFuture::checking(Box::pin(async move {
                    match settings.gate.pass::<Fields<'_>>(pending).await {
                        Passage::Admit(fields) => {
                            let mut response = service.call(request).await?;
                            Gate::add_fields(&mut Fields(response.headers_mut()), fields);
                            Ok(response.map_into_left_body())
                        }
                        Passage::Refuse(mut refusal) => {
                            let response = settings.refuse(&mut refusal);
                            Ok(request.into_response(response).map_into_right_body())
                        }
                    }
                }));
            }
        };
        drop(view);
        match passage {
            Passage::Admit(fields) => ResponseFuture::admitted(self.service.call(request), fields),
            Passage::Refuse(mut refusal) => {
                let response = settings.refuse(&mut refusal);
                ResponseFuture::ready(Ok(request.into_response(response).map_into_right_body()))
            }
        }
    }
}
