namespace VarSharp;

/// <summary>
/// The one error type VarSharp raises for bad input (files, configs, arguments). Its message is a single sentence that
/// says what was expected and what was found; the CLI prints it and exits non-zero.
/// </summary>
public class VarSharpException : Exception
{
    public VarSharpException(string message) : base(message) { }
    public VarSharpException(string message, Exception inner) : base(message, inner) { }
}
