/*
 * twiwatch's development FHIR server: HAPI FHIR JPA server 8.8.0 on H2, R4B or R4, rest-hook Subscriptions on.
 * A developer tool for tests and the demo (`twiwatch fhir-server up`); the chart never deploys it.
 * Research use only, not for clinical use.
 *
 * Properties (passed on the command line by stream/devtools/fhir_local.py):
 *   twiwatch.fhir-version            R4B (default) | R4
 *   twiwatch.auth.static-token       a bearer token accepted as is (development and tests)
 *   twiwatch.auth.introspection-url  an OAuth2 token introspection endpoint (RFC 7662), e.g. Ory Hydra's admin API
 *   twiwatch.auth.token-endpoint     advertised in [base]/.well-known/smart-configuration (SMART Backend Services)
 *   twiwatch.auth.secure-only        true: tokens are enforced on the HTTPS connector only
 *   twiwatch.http-port               with HTTPS on server.port: also plain HTTP on this port (loopback)
 * Write-path settings (defaults measured as the faster; see jpaStorageSettings and subscriptionTypeFilter below):
 *   twiwatch.jpa.tag-storage                           INLINE (default) | VERSIONED | NON_VERSIONED
 *   twiwatch.jpa.suppress-string-indexing-in-tokens    true (default): no `:text` index rows for codings
 *   twiwatch.jpa.search-param-identity-table           false (default)
 *   twiwatch.hibernate.order-writes                    true (default): ordered, batched inserts and updates
 *   twiwatch.subscriptions.resource-types              DiagnosticReport (default); empty: every type is matched
 * With neither token setting the server is open. With one, every request but GET metadata and the SMART
 * configuration needs "Authorization: Bearer"; a write needs a scope that allows writing (system/*.write,
 * system/<Type>.write, SMART v2 system/<Type>.cud or *.* forms).
 */
package org.twiwatch.devfhir;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.IFhirSystemDao;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.r4b.JpaR4BConfig;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.provider.IJpaSystemProvider;
import ca.uhn.fhir.jpa.provider.JpaCapabilityStatementProvider;
import ca.uhn.fhir.jpa.search.DatabaseBackedPagingProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.server.IncomingRequestAddressStrategy;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import ca.uhn.fhir.rest.server.util.ISearchParamRegistry;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import jakarta.persistence.EntityManagerFactory;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import javax.sql.DataSource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchClientAutoConfiguration;
import org.springframework.boot.autoconfigure.elasticsearch.ElasticsearchRestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.http.client.HttpClientAutoConfiguration;
import org.springframework.boot.autoconfigure.web.client.RestClientAutoConfiguration;
import org.springframework.boot.autoconfigure.web.client.RestTemplateAutoConfiguration;
import org.apache.catalina.connector.Connector;
import org.springframework.boot.web.embedded.tomcat.TomcatServletWebServerFactory;
import org.springframework.boot.web.server.WebServerFactoryCustomizer;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;
import org.springframework.web.filter.OncePerRequestFilter;

// Elasticsearch is not used; Spring's HTTP client auto-configuration wants a newer Apache HttpClient 5 than HAPI's.
@SpringBootApplication(exclude = {ElasticsearchRestClientAutoConfiguration.class,
        ElasticsearchClientAutoConfiguration.class, HttpClientAutoConfiguration.class, RestClientAutoConfiguration.class,
        RestTemplateAutoConfiguration.class})
@Import({HapiJpaConfig.class, ThreadPoolFactoryConfig.class, JpaBatch2Config.class, Batch2JobsConfig.class, SubscriptionSubmitterConfig.class,
        SubscriptionProcessorConfig.class, SubscriptionChannelConfig.class})
public class FhirDevServer {

    public static void main(String[] args) {
        SpringApplication.run(FhirDevServer.class, args);
    }

    @Configuration
    @ConditionalOnProperty(name = "twiwatch.fhir-version", havingValue = "R4B", matchIfMissing = true)
    @Import(JpaR4BConfig.class)
    static class R4B {
    }

    @Configuration
    @ConditionalOnProperty(name = "twiwatch.fhir-version", havingValue = "R4")
    @Import(JpaR4Config.class)
    static class R4 {
    }

    /**
     * Write-path settings, measured with bench/fhir_server_time.py (docs/BENCHMARKS.md, "FHIR delivery"): together
     * with hibernate.order-writes and the subscription filter below, ~30 % less server CPU per report version.
     * Each is a property, so the old behaviour can be measured beside it (--twiwatch.jpa.tag-storage=VERSIONED, ...).
     * - tag-storage INLINE: meta.tag/security/profile stay in the resource body instead of two tag rows per tag per
     *   version (HAPI's VERSIONED default); a report carries three. Tags are then not merged across versions, which
     *   twiwatch never relies on (every version carries the same ones; docs/SPEC.md §3.7).
     * - suppress-string-indexing-in-tokens: no string index rows for codings' display text (only the `:text`
     *   modifier on token searches uses them; no consumer of twiwatch's reports does).
     * - search-param-identity-table false: HAPI 8's background writes of search-parameter identities (a
     *   maintenance table the server does not read to answer requests).
     */
    @Bean
    public JpaStorageSettings jpaStorageSettings(
            @Value("${twiwatch.jpa.tag-storage:INLINE}") String tagStorage,
            @Value("${twiwatch.jpa.suppress-string-indexing-in-tokens:true}") boolean suppressTokenStrings,
            @Value("${twiwatch.jpa.search-param-identity-table:false}") boolean searchParamIdentityTable) {
        JpaStorageSettings s = new JpaStorageSettings();
        s.setTagStorageMode(JpaStorageSettings.TagStorageModeEnum.valueOf(tagStorage));
        s.setSuppressStringIndexingInTokens(suppressTokenStrings);
        s.setWriteToSearchParamIdentityTable(searchParamIdentityTable);
        // Client-assigned ids (Provenance/<id> by PUT) must contain a letter; twiwatch's do ("twi-...").
        s.setResourceClientIdStrategy(JpaStorageSettings.ClientIdStrategyEnum.ALPHANUMERIC);
        s.setAllowExternalReferences(true);
        s.setAllowContainsSearches(true);
        s.setAutoCreatePlaceholderReferenceTargets(false);
        // Searches of a just-written resource must see it (the sink reads before it writes).
        s.setReuseCachedSearchResultsForMillis(null);
        s.setIndexMissingFields(JpaStorageSettings.IndexEnabledEnum.DISABLED);
        return s;
    }

    @Bean
    public PartitionSettings partitionSettings() {
        return new PartitionSettings();
    }

    @Bean
    public SubscriptionSettings subscriptionSettings() {
        SubscriptionSettings s = new SubscriptionSettings();
        s.addSupportedSubscriptionType(org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType.RESTHOOK);
        s.setSubscriptionChangeQueuedImmediately(true);
        return s;
    }

    /**
     * Subscription matching for the listed resource types only (empty: all). HAPI otherwise queues every written
     * resource for matching and reads it back from the database on the matching thread, whether or not any
     * Subscription could match it. Subscription resources themselves always pass (their activation rides on it).
     */
    @Bean
    public SubscriptionTypeFilter subscriptionTypeFilter(
            ca.uhn.fhir.interceptor.api.IInterceptorService interceptors, ca.uhn.fhir.context.FhirContext fhirContext,
            @Value("${twiwatch.subscriptions.resource-types:DiagnosticReport}") String types) {
        SubscriptionTypeFilter filter = new SubscriptionTypeFilter(fhirContext, types);
        if (!filter.types.isEmpty()) {
            interceptors.registerInterceptor(filter);
        }
        return filter;
    }

    @ca.uhn.fhir.interceptor.api.Interceptor
    public static class SubscriptionTypeFilter {
        private final ca.uhn.fhir.context.FhirContext fhirContext;
        final java.util.Set<String> types = new java.util.HashSet<>();

        SubscriptionTypeFilter(ca.uhn.fhir.context.FhirContext fhirContext, String types) {
            this.fhirContext = fhirContext;
            for (String type : types.split(",")) {
                if (!type.isBlank()) {
                    this.types.add(type.trim());
                }
            }
        }

        @ca.uhn.fhir.interceptor.api.Hook(ca.uhn.fhir.interceptor.api.Pointcut.SUBSCRIPTION_RESOURCE_MODIFIED)
        public boolean resourceModified(ca.uhn.fhir.jpa.subscription.model.ResourceModifiedMessage message) {
            String type = message.getResourceType(fhirContext);
            return type == null || type.startsWith("Subscription") || types.contains(type);
        }
    }

    /** Email subscriptions are off; the subscription processor still wants a sender. */
    @Bean
    public ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender emailSender() {
        return details -> {
            throw new UnsupportedOperationException("email subscriptions are not enabled on this server");
        };
    }

    @Primary
    @Bean
    public LocalContainerEntityManagerFactoryBean entityManagerFactory(
            DataSource dataSource, ConfigurableListableBeanFactory beanFactory,
            ca.uhn.fhir.context.FhirContext fhirContext, JpaStorageSettings storageSettings,
            @Value("${twiwatch.hibernate.order-writes:true}") boolean orderWrites) {
        LocalContainerEntityManagerFactoryBean emf =
                HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, fhirContext, storageSettings);
        emf.setPersistenceUnitName("HAPI_PU");
        emf.setDataSource(dataSource);
        Map<String, Object> p = emf.getJpaPropertyMap();
        p.put("hibernate.dialect", "ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect");
        p.put("hibernate.hbm2ddl.auto", "update");
        p.put("hibernate.search.enabled", "false");
        p.put("hibernate.format_sql", "false");
        p.put("hibernate.show_sql", "false");
        // Ordered inserts and updates let Hibernate batch each table's rows of a transaction together.
        p.put("hibernate.jdbc.batch_size", "20");
        p.put("hibernate.order_inserts", String.valueOf(orderWrites));
        p.put("hibernate.order_updates", String.valueOf(orderWrites));
        p.put("hibernate.jdbc.batch_versioned_data", "true");
        p.put("hibernate.cache.use_query_cache", "false");
        p.put("hibernate.cache.use_second_level_cache", "false");
        p.put("hibernate.cache.use_structured_entries", "false");
        p.put("hibernate.cache.use_minimal_puts", "false");
        return emf;
    }

    @Primary
    @Bean
    public JpaTransactionManager transactionManager(EntityManagerFactory entityManagerFactory) {
        return new JpaTransactionManager(entityManagerFactory);
    }

    @Bean
    public RestfulServer restfulServer(IFhirSystemDao<?, ?> systemDao, ResourceProviderFactory providers,
            IJpaSystemProvider systemProvider, JpaStorageSettings storageSettings,
            ISearchParamRegistry searchParamRegistry, IValidationSupport validationSupport,
            DatabaseBackedPagingProvider pagingProvider) {
        RestfulServer server = new RestfulServer(systemDao.getContext());
        server.registerProviders(providers.createProviders());
        server.registerProvider(systemProvider);
        JpaCapabilityStatementProvider capabilities = new JpaCapabilityStatementProvider(
                server, systemDao, storageSettings, searchParamRegistry, validationSupport);
        capabilities.setImplementationDescription("twiwatch development FHIR server (HAPI FHIR JPA)");
        server.setServerConformanceProvider(capabilities);
        server.setPagingProvider(pagingProvider);
        server.setDefaultResponseEncoding(EncodingEnum.JSON);
        server.setServerAddressStrategy(new IncomingRequestAddressStrategy());
        return server;
    }

    @Bean
    public ServletRegistrationBean<RestfulServer> fhirServlet(RestfulServer server) {
        ServletRegistrationBean<RestfulServer> bean = new ServletRegistrationBean<>(server, "/fhir/*");
        bean.setLoadOnStartup(1);
        return bean;
    }

    /** A second, plain-HTTP connector beside HTTPS (one server for the TLS tests and the plain ones). */
    @Bean
    public WebServerFactoryCustomizer<TomcatServletWebServerFactory> plainConnector(
            @Value("${twiwatch.http-port:0}") int httpPort) {
        return factory -> {
            if (httpPort > 0) {
                Connector connector = new Connector(TomcatServletWebServerFactory.DEFAULT_PROTOCOL);
                connector.setPort(httpPort);
                connector.setProperty("address", "127.0.0.1");
                connector.setProperty("relaxedQueryChars", "|");
                factory.addAdditionalTomcatConnectors(connector);
            }
        };
    }

    @Bean
    public FilterRegistrationBean<BearerFilter> bearerFilter(
            @Value("${twiwatch.auth.static-token:}") String staticToken,
            @Value("${twiwatch.auth.introspection-url:}") String introspectionUrl,
            @Value("${twiwatch.auth.token-endpoint:}") String tokenEndpoint,
            @Value("${twiwatch.auth.secure-only:false}") boolean secureOnly) {
        FilterRegistrationBean<BearerFilter> bean = new FilterRegistrationBean<>(
                new BearerFilter(staticToken, introspectionUrl, tokenEndpoint, secureOnly));
        bean.addUrlPatterns("/fhir/*");
        bean.setOrder(1);
        return bean;
    }

    /** Bearer-token enforcement: a static token, or RFC 7662 introspection (answers cached for 30 s). */
    static class BearerFilter extends OncePerRequestFilter {
        private final String staticToken;
        private final String introspectionUrl;
        private final String tokenEndpoint;
        private final boolean secureOnly;
        private final ObjectMapper json = new ObjectMapper();
        private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        private final Map<String, Object[]> cache = new ConcurrentHashMap<>();

        BearerFilter(String staticToken, String introspectionUrl, String tokenEndpoint, boolean secureOnly) {
            this.staticToken = staticToken;
            this.introspectionUrl = introspectionUrl;
            this.tokenEndpoint = tokenEndpoint;
            this.secureOnly = secureOnly;
        }

        private boolean enforcing() {
            return !staticToken.isEmpty() || !introspectionUrl.isEmpty();
        }

        @Override
        protected void doFilterInternal(HttpServletRequest req, HttpServletResponse resp, FilterChain chain)
                throws ServletException, IOException {
            String path = req.getRequestURI().substring(req.getContextPath().length());
            if (path.equals("/fhir/.well-known/smart-configuration")) {
                smartConfiguration(resp);
                return;
            }
            boolean open = "GET".equals(req.getMethod()) && path.equals("/fhir/metadata");
            if (!enforcing() || open || (secureOnly && !req.isSecure())) {
                chain.doFilter(req, resp);
                return;
            }
            String header = req.getHeader("Authorization");
            if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
                deny(resp, 401, "login", "a bearer token is required");
                return;
            }
            String token = header.substring(7).trim();
            String scopes;
            if (!staticToken.isEmpty() && staticToken.equals(token)) {
                scopes = "system/*.*";
            } else if (!introspectionUrl.isEmpty()) {
                scopes = introspect(token);
                if (scopes == null) {
                    deny(resp, 401, "expired", "the token is not active");
                    return;
                }
            } else {
                deny(resp, 401, "login", "the token is not valid");
                return;
            }
            boolean write = !("GET".equals(req.getMethod()) || "HEAD".equals(req.getMethod()));
            if (write && !allowsWrite(scopes)) {
                deny(resp, 403, "forbidden", "the token's scopes do not allow writing");
                return;
            }
            chain.doFilter(req, resp);
        }

        static boolean allowsWrite(String scopes) {
            for (String scope : scopes.split(" ")) {
                int dot = scope.lastIndexOf('.');
                if (!scope.startsWith("system/") || dot < 0) {
                    continue;
                }
                String permission = scope.substring(dot + 1);
                if (permission.equals("write") || permission.equals("*") || permission.contains("c")
                        || permission.contains("u")) {
                    return true;
                }
            }
            return false;
        }

        /** The active token's scopes, or null when it is not active. */
        private String introspect(String token) throws IOException {
            Object[] hit = cache.get(token);
            long now = System.currentTimeMillis();
            if (hit != null && (long) hit[0] > now) {
                return (String) hit[1];
            }
            HttpRequest request = HttpRequest.newBuilder(URI.create(introspectionUrl))
                    .timeout(Duration.ofSeconds(5))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .POST(HttpRequest.BodyPublishers.ofString(
                            "token=" + URLEncoder.encode(token, StandardCharsets.UTF_8)))
                    .build();
            JsonNode answer;
            try {
                answer = json.readTree(http.send(request, HttpResponse.BodyHandlers.ofString()).body());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("introspection interrupted", e);
            }
            if (!answer.path("active").asBoolean(false)) {
                return null;
            }
            String scopes = answer.path("scope").asText("");
            long expires = answer.path("exp").asLong(0) * 1000;
            long until = Math.min(now + 30_000, expires > 0 ? expires : now + 30_000);
            cache.put(token, new Object[] {until, scopes});
            return scopes;
        }

        private void smartConfiguration(HttpServletResponse resp) throws IOException {
            Map<String, Object> body = new java.util.LinkedHashMap<>();
            if (!tokenEndpoint.isEmpty()) {
                body.put("token_endpoint", tokenEndpoint);
            }
            body.put("token_endpoint_auth_methods_supported", java.util.List.of("private_key_jwt"));
            body.put("token_endpoint_auth_signing_alg_values_supported", java.util.List.of("RS384", "ES384"));
            body.put("grant_types_supported", java.util.List.of("client_credentials"));
            body.put("scopes_supported", java.util.List.of("system/*.read", "system/*.write"));
            body.put("capabilities", java.util.List.of("client-confidential-asymmetric"));
            resp.setStatus(200);
            resp.setContentType("application/json");
            resp.getWriter().write(json.writeValueAsString(body));
        }

        private void deny(HttpServletResponse resp, int status, String code, String text) throws IOException {
            resp.setStatus(status);
            if (status == 401) {
                resp.setHeader("WWW-Authenticate", "Bearer realm=\"twiwatch-dev-fhir\"");
            }
            resp.setContentType("application/fhir+json");
            Map<String, Object> issue = Map.of("severity", "error", "code", code, "diagnostics", text);
            Map<String, Object> outcome = Map.of("resourceType", "OperationOutcome", "issue", java.util.List.of(issue));
            resp.getWriter().write(json.writeValueAsString(outcome));
        }
    }
}
