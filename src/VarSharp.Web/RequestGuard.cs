using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Net.Http.Headers;

namespace VarSharp.Web;

/// <summary>
/// Keeps other web sites from using a server that listens on the user's machine. Two browser tricks reach such a server
/// from a page the user merely visits: a cross-site request (a "simple" POST, or an image, iframe or EventSource URL,
/// which starts a generation as well), and DNS rebinding (a name of the attacker's that resolves to 127.0.0.1, which
/// makes the request same-origin to the browser). So: host names other than IP addresses and localhost must be allowed
/// by the operator; a request whose Origin header names another origin needs that origin allowed; and a request the
/// browser marks cross-site (Sec-Fetch-Site, sent to loopback and https servers) may not generate at all, nor fetch
/// anything but a navigation to the page. Allowed origins also get CORS answers, so their pages can read the results.
/// Clients that are not browsers send none of these headers.
/// </summary>
public static class RequestGuard
{
    public static IApplicationBuilder UseVarServerRequestGuard(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var options = app.ApplicationServices.GetRequiredService<ServeOptions>();
        app.Use(async (context, next) =>
        {
            if (Check(context.Request, options) is { } refusal)
            {
                context.Response.StatusCode = refusal.Status;
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync(JsonSerializer.Serialize(new ErrorDto(refusal.Message), ApiJson.Options));
                return;
            }
            await next(context);
        });
        if (options.AllowedOrigins.Count > 0) app.UseCors();
        return app;
    }

    /// <summary>The CORS policy for <see cref="ServeOptions.AllowedOrigins"/> (nothing when none are allowed).</summary>
    public static IServiceCollection AddVarServerCors(this IServiceCollection services, ServeOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.AllowedOrigins.Count == 0) return services;
        return services.AddCors(o => o.AddDefaultPolicy(policy =>
        {
            if (options.AllowedOrigins.Contains("*")) policy.AllowAnyOrigin();
            else policy.WithOrigins([.. options.AllowedOrigins]);
            // Retry-After is not a CORS-safelisted response header: without exposing it a page cannot read a 429's wait.
            policy.WithMethods(HttpMethods.Get, HttpMethods.Post).WithHeaders("Content-Type", "Accept", "Last-Event-ID")
                .WithExposedHeaders(HeaderNames.RetryAfter);
        }));
    }

    /// <summary>Null when the request may proceed, else the status and one-sentence reason to refuse it with.</summary>
    internal static (int Status, string Message)? Check(HttpRequest request, ServeOptions options)
    {
        if (request.Host.HasValue)
        {
            var name = request.Host.Host.Trim('[', ']').TrimEnd('.');
            bool known = name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase)
                         || IPAddress.TryParse(name, out _)
                         || options.AllowedHosts.Any(h => h == "*" || h.Equals(name, StringComparison.OrdinalIgnoreCase));
            if (!known)
                return (StatusCodes.Status400BadRequest,
                    $"this server does not answer to the host name '{Short(name)}'; use its IP address or localhost, or start it with --allowed-host {Short(name)}.");
        }

        string? origin = request.Headers.Origin is { Count: > 0 } o ? o.ToString() : null;
        string own = $"{request.Scheme}://{request.Host}";
        bool allowed = origin is not null
            && (origin.Equals(own, StringComparison.OrdinalIgnoreCase)
                || options.AllowedOrigins.Any(a => a == "*" || a.Equals(origin, StringComparison.OrdinalIgnoreCase)));
        bool wildcard = options.AllowedOrigins.Contains("*");
        // A browser sends Origin on every POST and on CORS GETs (EventSource, fetch); a foreign one needs allowing.
        bool foreignOrigin = origin is not null && !allowed;
        // An image, iframe or navigation from another site carries no Origin, only Sec-Fetch-Site. Such a request may
        // open the page (a link to it) but never start a generation, since its site cannot be checked against the list.
        string site = request.Headers["Sec-Fetch-Site"].ToString();
        bool crossSite = site is "cross-site" or "same-site" && !allowed && !wildcard
                         && (request.Path.StartsWithSegments("/v1/generate") || request.Headers["Sec-Fetch-Mode"].ToString() != "navigate");
        if (foreignOrigin || crossSite)
        {
            string from = origin ?? "another site";
            return (StatusCodes.Status403Forbidden,
                $"requests from {Short(from)} are refused: a page of another origin may not use this server unless it is started with --allow-origin {(origin is null ? "ORIGIN" : Short(origin))}.");
        }
        return null;
    }

    private static string Short(string text) => text.Length > 100 ? text[..100] + "…" : text;
}
