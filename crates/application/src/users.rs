//! Creating and looking up users, and knowing which user an identity provider's
//! subject is.

use std::fmt;
use std::sync::Arc;

use domain::UserId;
use domain::ports::{Clock, UserRepository};
use domain::user::{Registration, Subject, User};

/// Registers a new user with an empty wallet.
#[derive(Clone)]
pub struct CreateUser {
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl CreateUser {
    pub fn new(users: Arc<dyn UserRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { users, clock }
    }

    /// # Errors
    /// [`CreateUserError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_user", skip_all)]
    pub async fn execute(&self) -> Result<User, CreateUserError> {
        Ok(self.users.create(self.clock.now()).await?)
    }
}

/// Looks a user up by id.
#[derive(Clone)]
pub struct GetUser {
    users: Arc<dyn UserRepository>,
}

#[derive(Debug, thiserror::Error)]
pub enum GetUserError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetUser {
    pub fn new(users: Arc<dyn UserRepository>) -> Self {
        Self { users }
    }

    /// # Errors
    /// [`GetUserError::UserNotFound`] when there is no such user.
    #[tracing::instrument(name = "get_user", skip_all, fields(user_id = %id))]
    pub async fn execute(&self, id: UserId) -> Result<User, GetUserError> {
        self.users.find(id).await?.ok_or(GetUserError::UserNotFound)
    }
}

/// This instance's memory of which user each subject is: bounded (the least useful
/// entries are evicted), shared by [`RegisterSubject`] and [`ResolveSubject`].
///
/// A subject's user never changes once registered, so an entry never goes stale and
/// instances need not agree on what they hold. Only found users are kept: a subject not
/// registered yet may be registered by any instance at any time.
#[derive(Clone)]
pub struct SubjectCache(Arc<quick_cache::sync::Cache<Subject, UserId>>);

impl SubjectCache {
    /// How many subjects an instance remembers by default: each entry is a subject of at
    /// most 255 characters and an id, so a full cache holds a few tens of megabytes.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A cache of at most `capacity` subjects.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(quick_cache::sync::Cache::new(capacity)))
    }

    /// How many subjects it holds now.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The most subjects it holds.
    pub fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn get(&self, subject: &Subject) -> Option<UserId> {
        self.0.get(subject)
    }

    fn remember(&self, subject: &Subject, user: UserId) {
        self.0.insert(subject.clone(), user);
    }
}

impl Default for SubjectCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for SubjectCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectCache")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Registers the caller's subject: creates its user (with an empty wallet) the first
/// time, returns that same user every time after.
#[derive(Clone)]
pub struct RegisterSubject {
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
    cache: SubjectCache,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterSubjectError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl RegisterSubject {
    pub fn new(users: Arc<dyn UserRepository>, clock: Arc<dyn Clock>, cache: SubjectCache) -> Self {
        Self {
            users,
            clock,
            cache,
        }
    }

    /// Always asks the store, which alone knows whether the subject is new; the answer
    /// is remembered for [`ResolveSubject`].
    ///
    /// # Errors
    /// [`RegisterSubjectError::Unknown`] when the store fails.
    #[tracing::instrument(name = "register_subject", skip_all)]
    pub async fn execute(
        &self,
        subject: &Subject,
    ) -> Result<(User, Registration), RegisterSubjectError> {
        let (user, registration) = self.users.for_subject(subject, self.clock.now()).await?;
        self.cache.remember(subject, user.id);
        Ok((user, registration))
    }
}

/// Gives the subjects mapped before subjects were keyed by issuer to the issuer configured
/// now: run at start-up with authentication on, before any request, so that those users
/// keep their wallets under the configuration they came from.
#[derive(Clone)]
pub struct AdoptUnkeyedSubjects {
    users: Arc<dyn UserRepository>,
}

impl AdoptUnkeyedSubjects {
    pub fn new(users: Arc<dyn UserRepository>) -> Self {
        Self { users }
    }

    /// Adopts them for `configured` (the configured issuer, or none: the empty issuer of
    /// one HS256 secret); returns how many there were.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn execute(&self, configured: Option<&str>) -> anyhow::Result<u64> {
        let issuer = Subject::issuer_of(configured);
        let adopted = self.users.adopt_unkeyed_subjects(issuer).await?;
        if adopted > 0 {
            tracing::info!(
                subjects = adopted,
                issuer,
                "subjects mapped before issuers were kept now belong to the configured issuer"
            );
        }
        Ok(adopted)
    }
}

crate::debug_opaque!(AdoptUnkeyedSubjects);

/// Which user the caller's subject is, for every authenticated request: from this
/// instance's [`SubjectCache`] when it has the subject (no round trip), else from the
/// store, once.
#[derive(Clone)]
pub struct ResolveSubject {
    users: Arc<dyn UserRepository>,
    cache: SubjectCache,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveSubjectError {
    /// The subject has no user yet: it registers with `POST /users` first.
    #[error("the subject is not registered")]
    Unregistered,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ResolveSubject {
    pub fn new(users: Arc<dyn UserRepository>, cache: SubjectCache) -> Self {
        Self { users, cache }
    }

    /// # Errors
    /// [`ResolveSubjectError::Unregistered`] when the subject has no user;
    /// [`ResolveSubjectError::Unknown`] when the store fails.
    #[tracing::instrument(name = "resolve_subject", skip_all)]
    pub async fn execute(&self, subject: &Subject) -> Result<UserId, ResolveSubjectError> {
        if let Some(user) = self.cache.get(subject) {
            return Ok(user);
        }
        let user = self
            .users
            .user_for_subject(subject)
            .await?
            .ok_or(ResolveSubjectError::Unregistered)?;
        self.cache.remember(subject, user);
        Ok(user)
    }
}

/// Why a user-scoped request acts for no user.
#[derive(Debug, thiserror::Error)]
pub enum ActingUserError {
    /// No authenticated subject, and the request names no user.
    #[error("the request names no user")]
    Unnamed,
    /// The request names a user that is not the authenticated subject's (existing or
    /// not: the answer says nothing about other users).
    #[error("a subject acts only for its own user")]
    NotYours,
    /// The authenticated subject has no user yet, and the request names none.
    #[error("the subject is not registered")]
    Unregistered,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ResolveSubject {
    /// The user a user-scoped request acts for. Without an authenticated `subject`
    /// (end-user authentication off), the user it `named`, which it must name. With
    /// one, the subject's user; a `named` user must be that one.
    ///
    /// # Errors
    /// [`ActingUserError`]: no user named without a subject; another user named; an
    /// unregistered subject naming no one; the store failing.
    pub async fn acting_user(
        &self,
        subject: Option<&Subject>,
        named: Option<UserId>,
    ) -> Result<UserId, ActingUserError> {
        let Some(subject) = subject else {
            return named.ok_or(ActingUserError::Unnamed);
        };
        match (self.execute(subject).await, named) {
            (Ok(own), Some(named)) if named != own => Err(ActingUserError::NotYours),
            (Ok(own), _) => Ok(own),
            (Err(ResolveSubjectError::Unregistered), Some(_)) => Err(ActingUserError::NotYours),
            (Err(ResolveSubjectError::Unregistered), None) => Err(ActingUserError::Unregistered),
            (Err(ResolveSubjectError::Unknown(e)), _) => Err(ActingUserError::Unknown(e)),
        }
    }
}

crate::debug_opaque!(CreateUser, GetUser, RegisterSubject, ResolveSubject);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use domain::ports::{MockClock, MockUserRepository};

    fn clock_at(secs: i64) -> Arc<MockClock> {
        let mut clock = MockClock::new();
        let now = Utc.timestamp_opt(secs, 0).single().unwrap();
        clock.expect_now().return_const(now);
        Arc::new(clock)
    }

    #[tokio::test]
    async fn creating_a_user_stamps_it_with_the_clock() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(|now| now.timestamp() == 1_000)
            .times(1)
            .returning(|now| {
                Ok(User {
                    id: UserId::new(5).unwrap(),
                    created_at: now,
                })
            });
        let user = CreateUser::new(Arc::new(users), clock_at(1_000))
            .execute()
            .await
            .unwrap();
        assert_eq!(user.id.get(), 5);
        assert_eq!(user.created_at.timestamp(), 1_000);
    }

    #[tokio::test]
    async fn a_store_failure_while_creating_is_unknown() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .returning(|_| Err(anyhow::anyhow!("boom")));
        let err = CreateUser::new(Arc::new(users), clock_at(0))
            .execute()
            .await
            .unwrap_err();
        assert!(matches!(err, CreateUserError::Unknown(_)));
    }

    #[tokio::test]
    async fn an_unknown_user_is_not_found() {
        let mut users = MockUserRepository::new();
        users.expect_find().returning(|_| Ok(None));
        let err = GetUser::new(Arc::new(users))
            .execute(UserId::new(9).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, GetUserError::UserNotFound));
    }

    #[tokio::test]
    async fn a_known_user_is_returned() {
        let mut users = MockUserRepository::new();
        users
            .expect_find()
            .withf(|id| id.get() == 9)
            .returning(|id| {
                Ok(Some(User {
                    id,
                    created_at: Utc::now(),
                }))
            });
        let user = GetUser::new(Arc::new(users))
            .execute(UserId::new(9).unwrap())
            .await
            .unwrap();
        assert_eq!(user.id.get(), 9);
    }

    fn subject(raw: &str) -> Subject {
        Subject::new("https://id.example", raw).unwrap()
    }

    fn user(id: i64) -> User {
        User {
            id: UserId::new(id).unwrap(),
            created_at: Utc.timestamp_opt(1_000, 0).single().unwrap(),
        }
    }

    #[tokio::test]
    async fn registering_asks_the_store_with_the_clock_every_time() {
        let mut users = MockUserRepository::new();
        let mut first = true;
        users
            .expect_for_subject()
            .withf(|subject, now| subject.sub() == "idp|a" && now.timestamp() == 1_000)
            .times(2)
            .returning(move |_, _| {
                let registration = if first {
                    Registration::Created
                } else {
                    Registration::Existing
                };
                first = false;
                Ok((user(7), registration))
            });
        let register = RegisterSubject::new(Arc::new(users), clock_at(1_000), SubjectCache::new(8));
        let (created, registration) = register.execute(&subject("idp|a")).await.unwrap();
        assert_eq!((created.id.get(), registration), (7, Registration::Created));
        let (again, registration) = register.execute(&subject("idp|a")).await.unwrap();
        assert_eq!((again.id.get(), registration), (7, Registration::Existing));
    }

    #[tokio::test]
    async fn without_a_subject_the_named_user_acts_and_must_be_named() {
        let mut users = MockUserRepository::new();
        users.expect_user_for_subject().times(0);
        let resolve = ResolveSubject::new(Arc::new(users), SubjectCache::new(8));
        let named = UserId::new(3).unwrap();
        assert_eq!(resolve.acting_user(None, Some(named)).await.unwrap(), named);
        assert!(matches!(
            resolve.acting_user(None, None).await,
            Err(ActingUserError::Unnamed)
        ));
    }

    #[tokio::test]
    async fn a_subject_acts_for_its_own_user_only() {
        let mut users = MockUserRepository::new();
        users
            .expect_user_for_subject()
            .returning(|subject| Ok((subject.sub() == "idp|a").then(|| UserId::new(7).unwrap())));
        let resolve = ResolveSubject::new(Arc::new(users), SubjectCache::new(8));
        let (a, nobody) = (subject("idp|a"), subject("idp|new"));
        let id = |raw| UserId::new(raw).unwrap();
        assert_eq!(resolve.acting_user(Some(&a), None).await.unwrap(), id(7));
        assert_eq!(
            resolve.acting_user(Some(&a), Some(id(7))).await.unwrap(),
            id(7)
        );
        for (who, named) in [
            (&a, Some(id(8))),
            (&nobody, Some(id(7))),
            (&nobody, Some(id(8))),
        ] {
            assert!(
                matches!(
                    resolve.acting_user(Some(who), named).await,
                    Err(ActingUserError::NotYours)
                ),
                "{who:?} naming {named:?}"
            );
        }
        assert!(matches!(
            resolve.acting_user(Some(&nobody), None).await,
            Err(ActingUserError::Unregistered)
        ));
    }

    #[tokio::test]
    async fn a_registered_subject_resolves_without_asking_the_store() {
        let mut users = MockUserRepository::new();
        users
            .expect_for_subject()
            .returning(|_, _| Ok((user(7), Registration::Created)));
        users.expect_user_for_subject().times(0);
        let users: Arc<dyn UserRepository> = Arc::new(users);
        let cache = SubjectCache::new(8);
        RegisterSubject::new(users.clone(), clock_at(0), cache.clone())
            .execute(&subject("idp|a"))
            .await
            .unwrap();
        let resolved = ResolveSubject::new(users, cache)
            .execute(&subject("idp|a"))
            .await
            .unwrap();
        assert_eq!(resolved.get(), 7);
    }

    #[tokio::test]
    async fn a_subject_is_read_from_the_store_once_then_remembered() {
        let mut users = MockUserRepository::new();
        users
            .expect_user_for_subject()
            .withf(|subject| subject.sub() == "idp|b")
            .times(1)
            .returning(|_| Ok(Some(UserId::new(9).unwrap())));
        let resolve = ResolveSubject::new(Arc::new(users), SubjectCache::new(8));
        for _ in 0..3 {
            assert_eq!(resolve.execute(&subject("idp|b")).await.unwrap().get(), 9);
        }
    }

    #[tokio::test]
    async fn unkeyed_subjects_are_adopted_by_the_configured_issuer_or_the_empty_one() {
        for (configured, issuer) in [
            (Some("https://id.example"), "https://id.example"),
            (None, ""),
        ] {
            let mut users = MockUserRepository::new();
            users
                .expect_adopt_unkeyed_subjects()
                .withf(move |given| given == issuer)
                .times(1)
                .returning(|_| Ok(3));
            let adopt = AdoptUnkeyedSubjects::new(Arc::new(users));
            assert_eq!(adopt.execute(configured).await.unwrap(), 3);
        }
    }

    /// The cache is keyed by issuer too: one `sub` remembered for one issuer is never the
    /// answer for another's.
    #[tokio::test]
    async fn a_remembered_sub_of_one_issuer_is_not_anothers() {
        let mut users = MockUserRepository::new();
        users.expect_user_for_subject().returning(|subject| {
            Ok((subject.issuer() == "https://id.example").then(|| UserId::new(9).unwrap()))
        });
        let resolve = ResolveSubject::new(Arc::new(users), SubjectCache::new(8));
        assert_eq!(resolve.execute(&subject("u")).await.unwrap().get(), 9);
        let stranger = Subject::new("https://other.example", "u").unwrap();
        let err = resolve.execute(&stranger).await.unwrap_err();
        assert!(matches!(err, ResolveSubjectError::Unregistered));
    }

    #[tokio::test]
    async fn an_unregistered_subject_is_refused_and_not_remembered() {
        let mut users = MockUserRepository::new();
        // Asked each time: the subject may be registered in between, by any instance.
        users
            .expect_user_for_subject()
            .times(2)
            .returning(|_| Ok(None));
        let cache = SubjectCache::new(8);
        let resolve = ResolveSubject::new(Arc::new(users), cache.clone());
        for _ in 0..2 {
            let err = resolve.execute(&subject("idp|c")).await.unwrap_err();
            assert!(matches!(err, ResolveSubjectError::Unregistered));
        }
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_store_failure_while_resolving_or_registering_is_unknown() {
        let mut users = MockUserRepository::new();
        users
            .expect_user_for_subject()
            .returning(|_| Err(anyhow::anyhow!("boom")));
        users
            .expect_for_subject()
            .returning(|_, _| Err(anyhow::anyhow!("boom")));
        let users: Arc<dyn UserRepository> = Arc::new(users);
        let cache = SubjectCache::new(8);
        let err = ResolveSubject::new(users.clone(), cache.clone())
            .execute(&subject("idp|d"))
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveSubjectError::Unknown(_)));
        let err = RegisterSubject::new(users, clock_at(0), cache.clone())
            .execute(&subject("idp|d"))
            .await
            .unwrap_err();
        assert!(matches!(err, RegisterSubjectError::Unknown(_)));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn the_cache_holds_at_most_its_capacity() {
        let mut users = MockUserRepository::new();
        users
            .expect_user_for_subject()
            .returning(|_| Ok(Some(UserId::new(1).unwrap())));
        let cache = SubjectCache::new(16);
        let resolve = ResolveSubject::new(Arc::new(users), cache.clone());
        for n in 0..1_000 {
            resolve
                .execute(&subject(&format!("idp|{n}")))
                .await
                .unwrap();
        }
        assert!(cache.len() <= 16, "{cache:?}");
        assert!(!cache.is_empty());
    }
}
