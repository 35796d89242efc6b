using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace VarSharp.Web;

/// <summary>
/// Gives the errors that routing produces itself (no such route, a method a route does not take) the same JSON body
/// as the API's own errors, {"error": "one sentence"}, instead of an empty response.
/// </summary>
public static class StatusErrors
{
    public static IApplicationBuilder UseVarServerStatusErrors(this IApplicationBuilder app) =>
        app.UseStatusCodePages(async context =>
        {
            var http = context.HttpContext;
            string path = http.Request.Path.Value is { Length: > 80 } long_ ? long_[..80] + "…" : http.Request.Path.Value ?? "/";
            string message = http.Response.StatusCode switch
            {
                StatusCodes.Status404NotFound => $"there is nothing at {path}; the API is described at /openapi/v1.json.",
                StatusCodes.Status405MethodNotAllowed => $"{http.Request.Method} is not allowed on {path}" +
                    (http.Response.Headers.Allow.Count > 0 ? $"; use {http.Response.Headers.Allow}." : "."),
                var status => $"the request could not be served (HTTP {status}).",
            };
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync(JsonSerializer.Serialize(new ErrorDto(message), ApiJson.Options));
        });
}
