using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace VarSharp.Web;

/// <summary>
/// Keeps other web sites from using a server that listens on the user's machine. Two browser tricks reach such a server
/// from a page the user merely visits: a cross-site request (a "simple" POST, or an image or EventSource URL, which
/// starts a generation as well), and DNS rebinding (a name of the attacker's that resolves to 127.0.0.1, which makes
/// the request same-origin to the browser). So: host names other than IP addresses and localhost must be allowed by the
/// operator, and a request that a browser marks as coming from another origin (its Origin header, or Sec-Fetch-Site on
/// anything but a top-level navigation) needs that origin allowed. Clients that are not browsers send neither header.
/// </summary>
public static class RequestGuard
{
    public static IApplicationBuilder UseVarServerRequestGuard(this IApplicationBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var options = app.ApplicationServices.GetRequiredService<ServeOptions>();
        return app.Use(async (context, next) =>
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
    }

    /// <summary>Null when the request may proceed, else the status and one-sentence reason to refuse it with.</summary>
    internal static (int Status, string Message)? Check(HttpRequest request, ServeOptions options)
    {
        if (request.Host.HasValue)
        {
            var name = request.Host.Host.Trim('[', ']');
            bool known = name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || IPAddress.TryParse(name, out _)
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
        // A browser sends Origin on every POST; a cross-origin GET that is not a navigation shows in Sec-Fetch-Site.
        bool crossPost = origin is not null && !allowed && !HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method);
        string site = request.Headers["Sec-Fetch-Site"].ToString();
        bool crossFetch = site is "cross-site" or "same-site" && request.Headers["Sec-Fetch-Mode"].ToString() != "navigate" && !allowed && !wildcard;
        if (crossPost || crossFetch)
        {
            string from = origin ?? "another site";
            return (StatusCodes.Status403Forbidden,
                $"requests from {Short(from)} are refused: a page of another origin may not use this server unless it is started with --allow-origin {(origin is null ? "ORIGIN" : Short(origin))}.");
        }
        return null;
    }

    private static string Short(string text) => text.Length > 100 ? text[..100] + "…" : text;
}
