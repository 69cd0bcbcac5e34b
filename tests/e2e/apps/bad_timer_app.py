"""An app whose timer has a classic 5-field cron schedule, which the Functions host refuses (it wants 6)."""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="*/5 * * * *", arg_name="timer", run_on_startup=False)
def every_five(timer: func.TimerRequest) -> None:
    pass
